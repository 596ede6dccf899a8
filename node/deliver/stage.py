"""Job stage 4: queue the objects for every destination and try once right away.

The job is done once its objects are safely queued; delivery state is tracked per object and
retried by the outbox sweep, so a PACS that is down does not fail (or re-run) the job.

``ctx.outgoing`` holds stored objects ready to send (`OutgoingObject`) and, possibly,
`DeferredObject`s: objects that are not needed for the first delivery (the PDF report). The
ready ones are queued and sent first; each deferred one is then produced (encoded and stored),
queued and sent on its own, so the slow report does not delay SEG + SR.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable


@dataclass(frozen=True)
class DeferredObject:
    kind: str
    produce: Callable[[], Any]  # encodes and stores the object; returns its OutgoingObject


class DeliverStage:
    def __init__(self, outbox: Any) -> None:
        self.outbox = outbox

    def __call__(self, ctx: Any) -> None:
        ready = [o for o in ctx.outgoing if not isinstance(o, DeferredObject)]
        deferred = [o for o in ctx.outgoing if isinstance(o, DeferredObject)]
        timings: dict[str, float] = {}
        t = time.perf_counter()
        self.outbox.enqueue(ctx.job.id, ready)
        delivered = self.outbox.run_due(job_id=ctx.job.id)
        timings["send"] = time.perf_counter() - t
        for d in deferred:
            t = time.perf_counter()
            obj = d.produce()
            timings[f"{d.kind}_encode"] = time.perf_counter() - t
            ready.append(obj)
            # Queued before it is sent: a PACS that is down now gets it from the retry sweep.
            t = time.perf_counter()
            self.outbox.enqueue(ctx.job.id, [obj])
            delivered += self.outbox.run_due(job_id=ctx.job.id)
            timings[f"{d.kind}_send"] = time.perf_counter() - t
        ctx.outgoing = ready
        ctx.result["delivered_on_first_try"] = delivered
        ctx.result["deliver_timings_s"] = {k: round(v, 4) for k, v in timings.items()}
