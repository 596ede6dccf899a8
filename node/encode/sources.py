"""Line up the source DICOM datasets with the slices of a `Volume`.

The job runner hands over the datasets of the source series in whatever order they were
stored; the labels are in `Volume` order (sorted along the slice normal). Every encoder needs
the two matched: `SourceStack` does it once, from ``volume.source_refs``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from pydicom.dataset import Dataset

from models.volume import Volume

__all__ = ["SourceStack", "match_sources"]


@dataclass(frozen=True)
class SourceStack:
    """The source images in the order highdicom expects, and how to reorder label slices.

    - single-frame series: ``images[k]`` is the instance of volume slice ``k``;
      ``to_source_frames(a)`` returns ``a`` unchanged.
    - one multi-frame instance: ``images == [ds]``; ``to_source_frames(a)`` returns an array
      with one entry per source frame (in frame-number order), zeros for frames the volume
      did not use (e.g. a duplicate position the loader dropped).
    """

    images: list[Dataset]
    multiframe: bool
    frame_of_slice: np.ndarray  # 0-based source frame index of each volume slice

    @property
    def reference(self) -> Dataset:
        """The dataset that carries patient/study attributes."""
        return self.images[0]

    def to_source_frames(self, per_slice: np.ndarray) -> np.ndarray:
        if not self.multiframe:
            return per_slice
        n_frames = int(self.images[0].NumberOfFrames)
        out = np.zeros((n_frames, *per_slice.shape[1:]), dtype=per_slice.dtype)
        out[self.frame_of_slice] = per_slice
        return out

    @property
    def series_instance_uid(self) -> str:
        return str(self.reference.SeriesInstanceUID)


def match_sources(source_datasets: Sequence[Dataset], volume: Volume) -> SourceStack:
    """Match datasets to ``volume.source_refs``; raises ValueError when a slice has no source."""
    if not volume.source_refs:
        raise ValueError("the volume has no source_refs: it did not come from a DICOM series")
    if len(volume.source_refs) != volume.shape[0]:
        raise ValueError("volume.source_refs must have one entry per slice")
    by_uid = {str(ds.SOPInstanceUID): ds for ds in source_datasets}
    missing = [uid for uid, _ in volume.source_refs if uid not in by_uid]
    if missing:
        raise ValueError(f"{len(missing)} source instance(s) of the volume were not provided")
    series = {str(by_uid[uid].SeriesInstanceUID) for uid, _ in volume.source_refs}
    if len(series) != 1:
        raise ValueError("the source images belong to more than one series")
    frames = [f for _, f in volume.source_refs]
    if all(f is None for f in frames):
        images = [by_uid[uid] for uid, _ in volume.source_refs]
        return SourceStack(images, False, np.arange(len(images)))
    uids = {uid for uid, _ in volume.source_refs}
    if len(uids) != 1 or any(f is None for f in frames):
        raise ValueError("mixed single-frame and multi-frame sources are not supported")
    ds = by_uid[next(iter(uids))]
    return SourceStack([ds], True, np.asarray([int(f) - 1 for f in frames]))  # type: ignore[arg-type]
