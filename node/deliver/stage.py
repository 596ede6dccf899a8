"""Job stage 4: queue the objects for every destination and try once right away.

The job is done once its objects are safely queued; delivery state is tracked per object and
retried by the outbox sweep, so a PACS that is down does not fail (or re-run) the job.
"""

from __future__ import annotations

from typing import Any


class DeliverStage:
    def __init__(self, outbox: Any) -> None:
        self.outbox = outbox

    def __call__(self, ctx: Any) -> None:
        self.outbox.enqueue(ctx.job.id, ctx.outgoing)
        delivered = self.outbox.run_due(job_id=ctx.job.id)
        ctx.result["delivered_on_first_try"] = delivered
