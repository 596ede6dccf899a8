"""Segmentation metrics as pure functions of label arrays (no I/O).

Conventions:
- Label arrays hold EMIDEC classes 0 background, 1 LV cavity, 2 normal myocardium, 3 infarct,
  4 no-reflow; shape (n_slices, rows, cols) for a case.
- Composite structures follow the EMIDEC challenge: myocardium = 2+3+4, infarct = 3+4,
  no-reflow = 4.
- Dice of two empty masks is 1.0 (EMIDEC's evaluation code, ``metrics.dc``: "In case of True
  Negative, the dice is defined as 1"); per-case Dice is computed in 3-D, all slices of the case
  as one volume (the final EMIDEC evaluation code, "Dice calculated in 3d", Aug 2020).
- Pooled Dice sums intersections and sizes over every slice of every case before dividing
  (the seed project's table).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage

CLASS_NAMES: dict[int, str] = {1: "lv_cavity", 2: "myocardium_normal", 3: "infarct", 4: "no_reflow"}
STRUCTURES: dict[str, tuple[int, ...]] = {
    "myocardium": (2, 3, 4),
    "infarct": (3, 4),
    "no_reflow": (4,),
}


def structure_mask(labels: np.ndarray, classes: Sequence[int]) -> np.ndarray:
    return np.isin(labels, np.asarray(classes))


def dice(pred: np.ndarray, ref: np.ndarray, empty: float = 1.0) -> float:
    """Dice of two binary masks; ``empty`` when both are empty."""
    p, r = np.asarray(pred, bool), np.asarray(ref, bool)
    if p.shape != r.shape:
        raise ValueError(f"shape mismatch {p.shape} vs {r.shape}")
    denom = int(p.sum()) + int(r.sum())
    if denom == 0:
        return float(empty)
    return 2.0 * int(np.logical_and(p, r).sum()) / denom


def overlap_counts(pred: np.ndarray, ref: np.ndarray, n_classes: int = 5) -> np.ndarray:
    """Per class c: [|pred==c & ref==c|, |pred==c|, |ref==c|] (shape (n_classes, 3)).

    Summing these over slices/cases and calling :func:`dice_from_counts` gives pooled Dice.
    """
    p = np.asarray(pred).ravel().astype(np.int64)
    r = np.asarray(ref).ravel().astype(np.int64)
    if p.shape != r.shape:
        raise ValueError("shape mismatch")
    inter = np.bincount(p[p == r], minlength=n_classes)[:n_classes]
    return np.stack([inter, np.bincount(p, minlength=n_classes)[:n_classes],
                     np.bincount(r, minlength=n_classes)[:n_classes]], axis=1)


def dice_from_counts(counts: np.ndarray, empty: float = float("nan")) -> np.ndarray:
    """Dice per row of ``overlap_counts`` output; ``empty`` where both sizes are 0."""
    c = np.asarray(counts, dtype=np.float64)
    denom = c[:, 1] + c[:, 2]
    with np.errstate(invalid="ignore", divide="ignore"):
        d = np.where(denom > 0, 2.0 * c[:, 0] / np.where(denom > 0, denom, 1.0), empty)
    return d


def case_structure_dice(pred: np.ndarray, ref: np.ndarray) -> dict[str, float]:
    """EMIDEC per-case Dice (3-D over the case) for myocardium, infarct, no-reflow."""
    return {name: dice(structure_mask(pred, cls), structure_mask(ref, cls))
            for name, cls in STRUCTURES.items()}


def _surface(mask: np.ndarray) -> np.ndarray:
    # Boundary pixels: the mask minus its erosion (4-connectivity), as in medpy/EMIDEC.
    if not mask.any():
        return mask
    eroded = ndimage.binary_erosion(mask, structure=ndimage.generate_binary_structure(2, 1),
                                    border_value=0)
    return mask & ~eroded


def surface_distances_2d(a: np.ndarray, b: np.ndarray,
                         spacing: tuple[float, float] = (1.0, 1.0)) -> np.ndarray:
    """Distances from each boundary pixel of ``a`` to the nearest boundary pixel of ``b``.

    ``spacing`` is (row spacing, column spacing). Both masks must be non-empty.
    """
    sa, sb = _surface(np.asarray(a, bool)), _surface(np.asarray(b, bool))
    if not sa.any() or not sb.any():
        raise ValueError("surface distance of an empty mask")
    dt = ndimage.distance_transform_edt(~sb, sampling=spacing)
    return dt[sa]


def hd95(pred: np.ndarray, ref: np.ndarray, spacing: tuple[float, float] = (1.0, 1.0)) -> float:
    """Symmetric 95th-percentile Hausdorff distance between two masks.

    2-D masks: the usual HD95. 3-D masks (n_slices, rows, cols): surface distances are
    computed in-plane on each slice where both masks are present and pooled before taking the
    percentile, because slice gaps (EMIDEC PNGs have none recorded; MyoPS up to 23 mm) would
    otherwise dominate. Slices where only one mask is present are ignored here and reported by
    :func:`slice_presence_mismatch`. NaN when no slice has both.
    """
    p, r = np.asarray(pred, bool), np.asarray(ref, bool)
    if p.shape != r.shape:
        raise ValueError("shape mismatch")
    if p.ndim == 2:
        p, r = p[None], r[None]
    dists = [np.concatenate([surface_distances_2d(p[k], r[k], spacing),
                             surface_distances_2d(r[k], p[k], spacing)])
             for k in range(p.shape[0]) if p[k].any() and r[k].any()]
    if not dists:
        return float("nan")
    return float(np.percentile(np.concatenate(dists), 95))


def slice_presence_mismatch(pred: np.ndarray, ref: np.ndarray) -> int:
    """Number of slices where exactly one of the two masks is present."""
    p = np.asarray(pred, bool).reshape(pred.shape[0], -1).any(1)
    r = np.asarray(ref, bool).reshape(ref.shape[0], -1).any(1)
    return int((p ^ r).sum())


def volume(mask: np.ndarray, voxel_volume: float = 1.0) -> float:
    """Size of a mask: pixels (``voxel_volume`` 1) or mL (voxel volume in mL)."""
    return float(np.count_nonzero(mask)) * float(voxel_volume)


def voxel_volume_ml(pixel_spacing: tuple[float, float], slice_spacing: float) -> float:
    """mL of one voxel from (row, col) spacing and slice spacing in mm."""
    return float(pixel_spacing[0]) * float(pixel_spacing[1]) * float(slice_spacing) / 1000.0


def agreement(pred_values: Sequence[float], ref_values: Sequence[float]) -> dict[str, float]:
    """Agreement of paired per-case measurements: mean difference (bias, pred - ref), its SD,
    Bland-Altman 95% limits, mean absolute difference and Pearson r (NaN if undefined)."""
    p, r = np.asarray(pred_values, float), np.asarray(ref_values, float)
    if p.shape != r.shape:
        raise ValueError("shape mismatch")
    if p.size == 0:
        nan = float("nan")
        return {"n": 0, "bias": nan, "sd": nan, "loa_low": nan, "loa_high": nan, "mad": nan,
                "pearson_r": nan}
    d = p - r
    sd = float(d.std(ddof=1)) if d.size > 1 else 0.0
    r_val = float("nan")
    if p.size > 1 and p.std() > 0 and r.std() > 0:
        r_val = float(np.corrcoef(p, r)[0, 1])
    return {"n": int(p.size), "bias": float(d.mean()), "sd": sd,
            "loa_low": float(d.mean() - 1.96 * sd), "loa_high": float(d.mean() + 1.96 * sd),
            "mad": float(np.abs(d).mean()), "pearson_r": r_val}
