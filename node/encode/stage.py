"""Job stage 3: encode SEG + SR (+ PDF) and keep them in the node's own store before delivery.

The objects are written durably under the store root (like received instances) and indexed, so
a delivery retry — even after a restart — re-sends exactly these files. UIDs are derived from
the series, its revision and the algorithm version, so re-running a job re-creates the same
objects rather than new copies.

The PDF report (~0.5-1 s of matplotlib on a small CPU) is kept off the path to the PACS: this
stage encodes and stores SEG + SR and hands the report over as a `DeferredObject`, which the
deliver stage encodes and sends only after SEG + SR have been sent (bench/latency measures it).
"""

from __future__ import annotations

import time
from typing import Any

from node.deliver.stage import DeferredObject
from node.encode import AlgorithmInfo, encode_report, encode_seg_sr
from node.encode.store import store_result


def _listed(obj: Any) -> dict[str, str]:
    return {"kind": obj.kind, "sop_instance_uid": obj.sop_instance_uid, "series_uid": obj.relpath.split("/")[1]}


class EncodeStage:
    def __init__(self, write_report: bool = True) -> None:
        self.write_report = write_report

    def warm(self) -> None:
        """Import the encoders (highdicom SEG/SR, matplotlib) so the first job does not pay for it."""
        import node.encode.report  # noqa: F401
        import node.encode.seg  # noqa: F401
        import node.encode.sr  # noqa: F401

    def __call__(self, ctx: Any) -> None:
        from node.infer.load import read_sources

        timings: dict[str, float] = {}
        t = time.perf_counter()
        sources = read_sources(ctx.sessions, ctx.store_root, ctx.job.series_uid)
        timings["read_sources"] = time.perf_counter() - t
        name, version = ctx.model
        algorithm = AlgorithmInfo(name=name, version=version)
        job_key = f"{ctx.job.series_uid}/r{ctx.job.revision}"
        t = time.perf_counter()
        objs = encode_seg_sr(sources, ctx.labels, ctx.volume, ctx.measurements, ctx.aha, algorithm, job_key=job_key)
        timings["seg_sr"] = time.perf_counter() - t
        t = time.perf_counter()
        outgoing: list[Any] = [store_result(ctx.files, ctx.sessions, "seg", objs.seg),
                               store_result(ctx.files, ctx.sessions, "sr", objs.sr)]
        timings["store"] = time.perf_counter() - t
        ctx.result["objects"] = [_listed(o) for o in outgoing]
        ctx.result["encode_timings_s"] = {k: round(v, 4) for k, v in timings.items()}
        if self.write_report:
            labels, volume, measurements, aha = ctx.labels, ctx.volume, ctx.measurements, ctx.aha

            def report() -> Any:
                pdf = encode_report(sources, labels, volume, measurements, aha, algorithm,
                                    derived_from=[objs.seg, objs.sr], job_key=job_key)
                obj = store_result(ctx.files, ctx.sessions, "pdf", pdf)
                ctx.result["objects"].append(_listed(obj))
                return obj

            outgoing.append(DeferredObject("pdf", report))
        ctx.outgoing = outgoing
