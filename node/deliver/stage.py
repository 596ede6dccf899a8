"""Job stage ``deliver``: queue the stored objects for every destination and try once right away.

The job is done once its objects are safely queued; delivery state is tracked per object and
retried by the outbox sweep, so a PACS that is down does not fail (or re-run) the job. A segment
job delivers twice: SEG + SR first, then the report once the ``report`` stage has made it.
"""

from __future__ import annotations

import time
from typing import TypeVar

from node.deliver.outbox import Outbox
from node.job.handover import Deliverable, JobRun
from node.retrieve.dicomweb import requested_destinations

D = TypeVar("D", bound=Deliverable)


class DeliverStage:
    """Queues ``data.outgoing`` in ``outbox`` and sends what is due for the job; passes ``data`` on."""

    def __init__(self, outbox: Outbox) -> None:
        self.outbox = outbox

    def __call__(self, run: JobRun, data: D) -> D:
        objects = list(data.outgoing)
        t = time.perf_counter()
        # A series retrieved for inference requests that named destinations goes to those only.
        only = requested_destinations(run.sessions, run.job.study_uid, run.job.series_uid)
        self.outbox.enqueue(run.job.id, objects, only=only)
        delivered = self.outbox.run_due(job_id=run.job.id)
        key = "_".join(o.kind for o in objects) or "nothing"
        run.result["delivered_on_first_try"] = run.result.get("delivered_on_first_try", 0) + delivered
        run.result.setdefault("deliver_timings_s", {})[f"send_{key}"] = round(time.perf_counter() - t, 4)
        return data
