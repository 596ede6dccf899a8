"""Job stage ``segment``: segment the loaded volume and compute the clinical measurements."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from models.aha import compute_aha
from models.measurements import compute_measurements
from models.segment import WeightsNotFoundError, load_model, segment_volume
from models.volume import Volume
from node.job.errors import PermanentError
from node.job.handover import JobRun, LoadedSeries, Segmentation

log = logging.getLogger(__name__)


def _phantom() -> Volume:
    """Two short-axis-like slices (bright cavity, dark ring): enough to run every step once."""
    rr, cc = np.mgrid[0:160, 0:160]
    d = np.hypot(rr - 80, cc - 80)
    img = np.where(d < 18, 900.0, np.where(d < 28, 60.0, 300.0)).astype(np.float32)
    return Volume(np.stack([img, img]), (1.25, 1.25), np.array([1.0, 0.0, 0.0]), np.array([0.0, 1.0, 0.0]),
                  np.array([[0.0, 0.0, 0.0], [0.0, 0.0, 10.0]]), slice_spacing=10.0, slice_thickness=8.0)


class SegmentStage:
    """Segments the volume with the configured model (``weights_dir``, ``runtime``: see
    `models.segment.segment_volume`) and measures the result."""

    def __init__(self, weights_dir: Path | None, runtime: str) -> None:
        self.weights_dir = weights_dir
        self.runtime = runtime

    def warm(self) -> None:
        """Load the model (cached per process) and run it once on a phantom: the first real job
        then pays neither the session set-up nor the first-run allocations."""
        try:
            load_model(self.weights_dir, self.runtime)
        except (WeightsNotFoundError, ValueError) as exc:  # the job reports it when one comes
            log.info("no model to warm up: %s", str(exc).splitlines()[0])
            return
        try:
            segment_volume(_phantom(), weights_dir=self.weights_dir, runtime=self.runtime)
        except Exception as exc:  # a phantom the rules reject is fine: the networks have run
            log.debug("warm-up run on the phantom: %s", exc)

    def __call__(self, run: JobRun, loaded: LoadedSeries) -> Segmentation:
        """Labels, measurements and AHA segments of ``loaded.volume``.

        Raises
        ------
        PermanentError
            No model weights to run.
        """
        volume = loaded.volume
        try:
            seg = segment_volume(volume, weights_dir=self.weights_dir, runtime=self.runtime)
        except WeightsNotFoundError as exc:
            raise PermanentError(str(exc)) from exc
        measurements = compute_measurements(seg.labels, volume)
        try:
            aha = compute_aha(seg.labels, volume)
        except ValueError as exc:  # e.g. no myocardium found: volumes are still reported
            aha = None
            run.result["aha_error"] = str(exc)
        run.result["model"] = {"name": seg.model_name, "version": seg.model_version, "runtime": seg.runtime,
                               "localised_by": seg.localised_by}
        run.result["segment_timings_s"] = {k: round(v, 4) for k, v in seg.timings.items()}
        run.result["measurements"] = measurements.to_dict()
        if seg.quality is not None:
            run.result["quality"] = seg.quality.to_dict()
        if aha is not None:
            run.result["aha"] = aha.to_dict()
        return Segmentation(run.job.series_uid, volume, seg.labels, seg.model_name, seg.model_version,
                            measurements, aha, quality=seg.quality)
