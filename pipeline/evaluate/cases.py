"""Evaluation cases: the image volume as the node would receive it, plus its ground truth.

* ``emidec-png``: the case's PNG slices read with ``models.io.load_png_stack`` (what
  ``lgenode segment`` does with a folder of PNG slices: no geometry, one pixel taken as
  ``TARGET_SPACING_MM`` by the preprocessing contract). Distances are reported in pixels and
  volumes in pixels: the PNGs were stretched to 256x256 and carry no spacing.
* ``myops-nifti``: ``CaseNNNN_LGE.nii.gz`` read with ``models.io.load_nifti`` (real geometry),
  labels mapped to EMIDEC classes. Distances in mm, volumes in mL (row x column x slice spacing).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from models.volume import Volume

FORMATS = ("emidec-png", "myops-nifti")


@dataclass
class EvalCase:
    case_id: str
    volume: Volume  # input to models.segment.segment_volume
    labels: np.ndarray  # ground truth (n, rows, cols) uint8 on the volume's grid
    spacing: tuple[float, float]  # (row, col) used for HD95: mm, or (1, 1) pixels
    distance_unit: str  # "mm" | "px"
    voxel_volume: float  # per voxel, in volume_unit
    volume_unit: str  # "mL" | "px"


def list_case_ids(fmt: str, root: str | os.PathLike[str] | None) -> list[str]:
    if fmt == "emidec-png":
        from pipeline.datasets import emidec

        return emidec.list_cases(root)
    if fmt == "myops-nifti":
        from pipeline.datasets import myops

        return myops.list_cases(root)
    raise ValueError(f"unknown format {fmt!r}; choose one of {FORMATS}")


def iter_cases(fmt: str, root: str | os.PathLike[str] | None,
               case_ids: list[str]) -> Iterator[EvalCase]:
    if fmt == "emidec-png":
        yield from _emidec(root, case_ids)
    elif fmt == "myops-nifti":
        yield from _myops(root, case_ids)
    else:
        raise ValueError(f"unknown format {fmt!r}; choose one of {FORMATS}")


def _emidec(root, case_ids: list[str]) -> Iterator[EvalCase]:
    from models.io import load_png_stack
    from pipeline.datasets import emidec

    files = emidec.slice_files(root)
    base = emidec.emidec_dir(root)
    for cid in case_ids:
        if cid not in files:
            raise KeyError(f"{cid} not found in {base}")
        volume = load_png_stack([base / "images" / n for n in files[cid]])
        gt = emidec.load_case(cid, root, files[cid]).masks
        if gt.shape != volume.pixels.shape:
            raise ValueError(f"{cid}: mask shape {gt.shape} != image {volume.pixels.shape}")
        yield EvalCase(cid, volume, gt.astype(np.uint8), (1.0, 1.0), "px", 1.0, "px")


def _myops(root, case_ids: list[str]) -> Iterator[EvalCase]:
    from pipeline.datasets import myops

    for cid in case_ids:
        c = myops.load_case(cid, root)
        v = c.volume
        yield EvalCase(cid, v, c.labels, (float(v.pixel_spacing[0]), float(v.pixel_spacing[1])),
                       "mm", float(v.voxel_volume_ml()), "mL")
