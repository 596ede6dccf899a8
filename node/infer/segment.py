"""Job stage 2: segment the loaded volume and compute the clinical measurements."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from models.aha import compute_aha
from models.measurements import compute_measurements
from models.segment import WeightsNotFoundError, segment_volume


class SegmentStage:
    def __init__(self, weights_dir: Path | None, runtime: str) -> None:
        self.weights_dir = weights_dir
        self.runtime = runtime

    def __call__(self, ctx: Any) -> None:
        from node.job.worker import PermanentError

        try:
            seg = segment_volume(ctx.volume, weights_dir=self.weights_dir, runtime=self.runtime)
        except WeightsNotFoundError as exc:
            raise PermanentError(str(exc)) from exc
        ctx.labels = seg.labels
        ctx.model = (seg.model_name, seg.model_version)
        ctx.measurements = compute_measurements(seg.labels, ctx.volume)
        try:
            ctx.aha = compute_aha(seg.labels, ctx.volume)
        except ValueError as exc:  # e.g. no myocardium found: volumes are still reported
            ctx.aha = None
            ctx.result["aha_error"] = str(exc)
        ctx.result["model"] = {"name": seg.model_name, "version": seg.model_version, "runtime": seg.runtime,
                               "localised_by": seg.localised_by}
        ctx.result["segment_timings_s"] = {k: round(v, 4) for k, v in seg.timings.items()}
        ctx.result["measurements"] = ctx.measurements.to_dict()
        if ctx.aha is not None:
            ctx.result["aha"] = ctx.aha.to_dict()
