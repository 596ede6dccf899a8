"""MyoPS 2020 LGE volumes (NIfTI, real geometry): ``<myops2020>/CaseNNNN_LGE.nii.gz`` + ``_gd``.

Labels are mapped to the EMIDEC classes: 500 (LV blood pool) -> 1, 200 (normal myocardium) and
1220 (edema, still myocardium) -> 2, 2221 (scar) -> 3, 600 (RV blood pool) and anything else
-> 0. MyoPS has no no-reflow class: MVO is inside scar, so class 4 never appears in its ground
truth (a predicted 4 counts as infarct in the EMIDEC-style "infarct = 3+4" metric).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from models.volume import Volume
from pipeline.datasets.paths import myops_dir

LABEL_MAP: dict[int, int] = {500: 1, 200: 2, 1220: 2, 2221: 3, 600: 0}
_NAME = re.compile(r"^(Case\d+)_gd\.nii(\.gz)?$")


@dataclass
class MyopsCase:
    case_id: str
    volume: Volume  # LGE, pixels (n_slices, rows, cols), geometry from the NIfTI affine
    labels: np.ndarray  # (n_slices, rows, cols) uint8, EMIDEC classes 0..3, same grid


def map_labels(gd: np.ndarray) -> np.ndarray:
    """MyoPS label values -> EMIDEC classes (unknown values -> background)."""
    out = np.zeros(gd.shape, dtype=np.uint8)
    for src, dst in LABEL_MAP.items():
        if dst:
            out[gd == src] = dst
    return out


def list_cases(root: str | os.PathLike[str] | None = None) -> list[str]:
    """Labelled cases (those with both ``_LGE`` and ``_gd``)."""
    base = myops_dir(root)
    if not base.is_dir():
        raise FileNotFoundError(f"MyoPS folder not found: {base}")
    out = []
    for p in sorted(base.glob("Case*_gd.nii*")):
        m = _NAME.match(p.name)
        if m and _lge_path(base, m.group(1)) is not None:
            out.append(m.group(1))
    return out


def load_case(case_id: str, root: str | os.PathLike[str] | None = None) -> MyopsCase:
    base = myops_dir(root)
    lge = _lge_path(base, case_id)
    gd = next(iter(sorted(base.glob(f"{case_id}_gd.nii*"))), None)
    if lge is None or gd is None:
        raise FileNotFoundError(f"{case_id}: LGE or label file missing in {base}")
    vol = read_nifti_volume(lge)
    gd_vol = read_nifti_volume(gd)
    if gd_vol.pixels.shape != vol.pixels.shape:
        raise ValueError(f"{case_id}: label grid {gd_vol.pixels.shape} != image {vol.pixels.shape}")
    vol.meta.setdefault("case_id", case_id)
    return MyopsCase(case_id, vol, map_labels(np.rint(gd_vol.pixels).astype(np.int32)))


def load_cases(case_ids: list[str] | None = None,
               root: str | os.PathLike[str] | None = None) -> list[MyopsCase]:
    return [load_case(c, root) for c in (case_ids or list_cases(root))]


def _lge_path(base: Path, case_id: str) -> Path | None:
    return next(iter(sorted(base.glob(f"{case_id}_LGE.nii*"))), None)


def read_nifti_volume(path: str | os.PathLike[str]) -> Volume:
    """NIfTI -> Volume through the models package's reader (what ``lgenode segment`` uses), so
    images and labels are on exactly the grid inference sees."""
    from models.io import load_nifti

    return load_nifti(path)
