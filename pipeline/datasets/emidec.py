"""EMIDEC as 2-D PNG slices: ``<emidec>/images|masks/Case_XNNN_sliceKKK.png``.

Images are 8-bit, masks hold the EMIDEC labels 0 background, 1 LV cavity, 2 normal myocardium,
3 infarct, 4 no-reflow. Every slice was stretched to 256x256 from a non-square original, so the
pixel grid has no physical spacing (volumes are in pixels, distances in pixels).
"""

from __future__ import annotations

import os
import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from pipeline.datasets.paths import emidec_dir

_NAME = re.compile(r"^(Case_[A-Z]\d+)_slice(\d+)\.png$")

# Case_P059 and Case_P072 share a byte-identical first slice and highly correlated others:
# treat them as one patient so that they never end up on both sides of a split.
PATIENT_ALIASES: dict[str, str] = {"Case_P072": "Case_P059"}


@dataclass
class EmidecCase:
    case_id: str
    images: np.ndarray  # (n_slices, 256, 256) uint8
    masks: np.ndarray  # (n_slices, 256, 256) uint8, labels 0..4
    slice_names: list[str]

    @property
    def group(self) -> str:
        return group_of(self.case_id)

    @property
    def has_infarct(self) -> bool:
        return bool(np.any(self.masks >= 3))

    @property
    def has_mvo(self) -> bool:
        return bool(np.any(self.masks == 4))


def group_of(case_id: str) -> str:
    """'normal' for Case_N..., 'pathological' for Case_P... (EMIDEC naming)."""
    return "normal" if case_id.startswith("Case_N") else "pathological"


def patient_of(case_id: str) -> str:
    return PATIENT_ALIASES.get(case_id, case_id)


def slice_files(root: str | os.PathLike[str] | None = None) -> dict[str, list[str]]:
    """Case id -> sorted slice file names (those with both an image and a mask)."""
    base = emidec_dir(root)
    images = base / "images"
    if not images.is_dir():
        raise FileNotFoundError(f"EMIDEC images folder not found: {images}")
    masks = {p.name for p in (base / "masks").glob("*.png")}
    cases: dict[str, list[tuple[int, str]]] = defaultdict(list)
    for p in images.glob("*.png"):
        m = _NAME.match(p.name)
        if m and p.name in masks:
            cases[m.group(1)].append((int(m.group(2)), p.name))
    return {c: [n for _, n in sorted(v)] for c, v in sorted(cases.items())}


def list_cases(root: str | os.PathLike[str] | None = None) -> list[str]:
    return list(slice_files(root))


def load_case(case_id: str, root: str | os.PathLike[str] | None = None,
              names: list[str] | None = None) -> EmidecCase:
    base = emidec_dir(root)
    names = names if names is not None else slice_files(root)[case_id]
    if not names:
        raise FileNotFoundError(f"no slices for {case_id} in {base}")
    imgs = np.stack([_read_png(base / "images" / n) for n in names])
    msks = np.stack([_read_png(base / "masks" / n) for n in names])
    if imgs.shape != msks.shape:
        raise ValueError(f"{case_id}: image/mask shapes differ {imgs.shape} vs {msks.shape}")
    if msks.max() > 4:
        raise ValueError(f"{case_id}: mask labels outside 0..4")
    return EmidecCase(case_id, imgs, msks, list(names))


def load_cases(case_ids: list[str] | None = None,
               root: str | os.PathLike[str] | None = None) -> list[EmidecCase]:
    files = slice_files(root)
    ids = list(files) if case_ids is None else case_ids
    missing = [c for c in ids if c not in files]
    if missing:
        raise KeyError(f"cases not found in {emidec_dir(root)}: {missing[:5]}")
    return [load_case(c, root, files[c]) for c in ids]


def load_roi_slices(case_ids: list[str], root: str | os.PathLike[str] | None = None,
                    progress: bool = True) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """128x128 ROI slices of the cases with the segmenter's preprocessing (ground-truth LV
    centre, normalised over each case's ROI stack): (images (N,128,128) float32, masks (N,128,128)
    uint8, case id per slice). Used where slices, not cases, are the unit (GANs, metrics)."""
    from tqdm import tqdm

    from models import preprocess as pp

    files = slice_files(root)
    missing = [c for c in case_ids if c not in files]
    if missing:
        raise KeyError(f"cases not found in {emidec_dir(root)}: {missing[:5]}")
    xs, ys, owner = [], [], []
    for cid in tqdm(case_ids, desc="loading cases", unit="case", disable=not progress, leave=False):
        case = load_case(cid, root, files[cid])
        x, y, _ = pp.preprocess_training_stack(case.images, case.masks)
        xs.append(x[..., 0])
        ys.append(y)
        owner += [cid] * len(y)
    if not xs:
        raise ValueError("no cases to load")
    return np.concatenate(xs).astype(np.float32), np.concatenate(ys).astype(np.uint8), owner


def _read_png(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        a = np.asarray(im.convert("L") if im.mode not in ("L", "I;16", "I") else im)
    if a.ndim != 2:
        raise ValueError(f"{path.name}: expected a single-channel image")
    return a.astype(np.uint8) if a.dtype != np.uint8 and a.max() <= 255 else a
