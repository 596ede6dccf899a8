"""Compare the labelmap the viewer holds with pydicom/highdicom's decode of the SEG, frame by frame.

The plugin hands the viewer one label image per source image: each voxel holds its innermost
segment (the node's segments nest: MVO within infarct within myocardium). Segment ``s`` of the
viewer is therefore "label is ``s`` or a segment nested in ``s``". Nesting is taken from the SEG's
own Segmented Property Type codes (as the plugin does), written here independently of the plugin.
Every SEG frame (one per segment per source image, empty frames included) is compared.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom

from inspect_seg import inspect

# (inner, outer) by Segmented Property Type: MVO (SCT 26036001) in infarct (SCT 22298006) in
# LV myocardium (SCT 49848007)
NESTED_TYPES = [("26036001", "22298006"), ("22298006", "49848007")]


def nesting_of(seg: pydicom.Dataset) -> dict[int, set[int]]:
    """segment number -> the segment numbers it contains (itself included)."""
    by_type = {str(s.SegmentedPropertyTypeCodeSequence[0].CodeValue): int(s.SegmentNumber) for s in seg.SegmentSequence}
    contains = {int(s.SegmentNumber): {int(s.SegmentNumber)} for s in seg.SegmentSequence}
    changed = True
    while changed:
        changed = False
        for inner, outer in NESTED_TYPES:
            if inner in by_type and outer in by_type:
                o, i = by_type[outer], by_type[inner]
                if not contains[i] <= contains[o]:
                    contains[o] |= contains[i]
                    changed = True
    return contains


def read_viewer_labels(folder: Path, sources: list[str], rows: int, cols: int) -> np.ndarray:
    """The dumped viewer labels as (n_sources, rows, cols) uint8; missing images raise."""
    out = np.zeros((len(sources), rows, cols), np.uint8)
    for k, sop in enumerate(sources):
        raw = np.fromfile(folder / f"{sop}.u8", dtype=np.uint8)
        if raw.size != rows * cols:
            raise ValueError(f"viewer label image of {sop} has {raw.size} pixels, expected {rows * cols}")
        out[k] = raw.reshape(rows, cols)
    return out


def compare(seg: pydicom.Dataset, viewer: np.ndarray, sources: list[str]) -> dict:
    """Per-frame comparison of the viewer labels with highdicom's masks of ``seg``."""
    info, masks = inspect(seg, sources)  # (n_sources, rows, cols, n_segments)
    assert masks is not None
    numbers = [s["number"] for s in info["segments"]]
    contains = nesting_of(seg)
    frames = differing_frames = differing_pixels = 0
    per_segment: dict[str, int] = {}
    for j, s in enumerate(numbers):
        mine = np.isin(viewer, sorted(contains[s]))
        diff = mine != masks[..., j].astype(bool)
        per_slice = diff.reshape(len(sources), -1).sum(axis=1)
        frames += len(sources)
        differing_frames += int((per_slice > 0).sum())
        differing_pixels += int(diff.sum())
        per_segment[str(s)] = int(diff.sum())
    return {"rows": int(seg.Rows), "columns": int(seg.Columns), "byte_aligned_frames": int(seg.Rows) * int(seg.Columns) % 8 == 0,
            "source_images": len(sources), "frames_compared": frames, "differing_frames": differing_frames,
            "differing_pixels": differing_pixels, "differing_pixels_per_segment": per_segment,
            "voxels_per_segment": info.get("voxels_per_segment")}
