"""Anatomical post-processing of label stacks (n, rows, cols): 0 bg, 1 cavity, 2 myocardium, 3 infarct, 4 MVO.

Each rule is a small function that returns a new array (the input is never modified). They are
meant for the ROI grid (square ``TARGET_SPACING_MM`` pixels), where the pixel thresholds below
have a fixed size in mm; ``apply_rules`` runs them in a fixed order.

Decisions:
* The heart is kept as ONE 3-D connected component (in-plane 8-connectivity, through-plane only
  the same (row, col)): short-axis slices of one stack overlap in-plane, so the LV is one
  column-like object, and blobs that do not touch it on any slice are false positives. A single
  slice reduces to the 2-D rule.
* "Wall" = myocardium incl. infarct and MVO (2, 3, 4). Infarct must lie in the wall: per slice,
  wall components smaller than ``MIN_WALL_FRACTION`` of the slice's largest wall component are
  relabelled to what surrounds them (cavity or background), which removes infarct/MVO blobs in the
  cavity or outside the heart but keeps a ring broken into a few large pieces.
* MVO is a dark core inside an infarct. An MVO component that does not touch infarct (8-
  neighbourhood) is dark myocardium without enhancement, i.e. normal myocardium: relabelled 2.
* Holes: anything enclosed by the cavity becomes cavity (papillary muscles and trabeculae are
  part of the cavity in the EMIDEC convention); background enclosed by the heart takes the most
  common label around it, except that a large hole enclosed only by wall (>= ``MIN_CAVITY_PX``)
  is an unlabelled cavity and becomes 1.
* Minimum reportable infarct (``drop_small_infarct``, off unless the model sets
  ``min_infarct_percent``): a stack whose infarct (3+4) is below that share of the LV wall is
  reported as having none; its infarct and MVO become normal myocardium. The network leaves a few
  scattered enhanced pixels on most normal hearts, which would turn "no scar" into "scar 0.7 %";
  the threshold is chosen on cross-validation records (``lgenode pipeline ensemble``), below
  the smallest infarct there.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

BACKGROUND, CAVITY, MYOCARDIUM, INFARCT, MVO = 0, 1, 2, 3, 4
WALL = (MYOCARDIUM, INFARCT, MVO)
MIN_WALL_FRACTION = 0.1
MIN_CAVITY_PX = 30  # ~47 mm^2 at 1.25 mm pixels: larger than any hole inside an 8-12 mm wall

_EIGHT = np.ones((3, 3), dtype=bool)
# 3-D: in-plane 8-neighbours, through-plane only the pixel directly above/below.
_HEART_3D = np.zeros((3, 3, 3), dtype=bool)
_HEART_3D[1] = True
_HEART_3D[0, 1, 1] = _HEART_3D[2, 1, 1] = True


def _stack(labels: np.ndarray) -> tuple[np.ndarray, bool]:
    a = np.asarray(labels)
    if a.ndim == 2:
        return a[None].copy(), True
    if a.ndim != 3:
        raise ValueError(f"expected (rows, cols) or (n, rows, cols) labels, got shape {a.shape}")
    return a.copy(), False


def _out(a: np.ndarray, squeezed: bool) -> np.ndarray:
    return a[0] if squeezed else a


def _components(mask: np.ndarray):
    """Yield (box, region, ring) per 8-connected component of a 2-D mask.

    ``box`` is a slice pair with a 1-pixel margin (clipped to the image), ``region`` the component
    and ``ring`` its 1-pixel 8-neighbourhood, both as boolean arrays on that box. Working on boxes
    keeps the cost proportional to the component, not to the image.
    """
    comp, n = ndimage.label(mask, structure=_EIGHT)
    for idx, sl in enumerate(ndimage.find_objects(comp), start=1):
        if sl is None:
            continue
        box = tuple(slice(max(s.start - 1, 0), s.stop + 1) for s in sl)
        region = comp[box] == idx
        ring = ndimage.binary_dilation(region, _EIGHT) & ~region
        yield box, region, ring


def _commonest(values: np.ndarray, exclude: tuple[int, ...] = ()) -> int:
    if exclude:
        values = values[~np.isin(values, exclude)]
    if values.size == 0:
        return BACKGROUND
    return int(np.bincount(values.astype(np.int64)).argmax())


def keep_largest_heart_component(labels: np.ndarray) -> np.ndarray:
    """Zero everything outside the largest 3-D connected component of labels > 0."""
    a, sq = _stack(labels)
    comp, n = ndimage.label(a > 0, structure=_HEART_3D)
    if n > 1:
        sizes = np.bincount(comp.ravel())
        sizes[0] = 0
        a[comp != int(sizes.argmax())] = BACKGROUND
    return _out(a, sq)


def fill_cavity_holes(labels: np.ndarray) -> np.ndarray:
    """Per slice: pixels enclosed by the cavity become cavity."""
    a, sq = _stack(labels)
    for k in range(a.shape[0]):
        cav = a[k] == CAVITY
        a[k][ndimage.binary_fill_holes(cav) & ~cav] = CAVITY
    return _out(a, sq)


def infarct_within_myocardium(labels: np.ndarray, min_fraction: float = MIN_WALL_FRACTION) -> np.ndarray:
    """Per slice: small wall components (< min_fraction of the largest) take the surrounding non-wall label."""
    a, sq = _stack(labels)
    for k in range(a.shape[0]):
        sl = a[k]
        parts = list(_components(np.isin(sl, WALL)))
        if len(parts) < 2:
            continue
        largest = max(int(region.sum()) for _, region, _ in parts)
        for box, region, ring in parts:
            if region.sum() < min_fraction * largest:
                sub = sl[box]
                sub[region] = _commonest(sub[ring], exclude=WALL)
    return _out(a, sq)


def mvo_within_infarct(labels: np.ndarray) -> np.ndarray:
    """Per slice: MVO components not touching infarct become normal myocardium."""
    a, sq = _stack(labels)
    for k in range(a.shape[0]):
        sl = a[k]
        for box, region, ring in list(_components(sl == MVO)):
            sub = sl[box]
            if not (sub[ring] == INFARCT).any():
                sub[region] = MYOCARDIUM
    return _out(a, sq)


def fill_heart_holes(labels: np.ndarray, min_cavity_px: int = MIN_CAVITY_PX) -> np.ndarray:
    """Per slice: background enclosed by the heart takes the commonest label around it.

    Exception: a hole of at least ``min_cavity_px`` enclosed only by wall is an unlabelled cavity.
    """
    a, sq = _stack(labels)
    for k in range(a.shape[0]):
        sl = a[k]
        heart = sl > 0
        for box, region, ring in list(_components(ndimage.binary_fill_holes(heart) & ~heart)):
            sub = sl[box]
            around = sub[ring]
            if np.isin(around, WALL).all() and int(region.sum()) >= min_cavity_px:
                sub[region] = CAVITY
            else:
                sub[region] = _commonest(around)
    return _out(a, sq)


def infarct_percent(labels: np.ndarray) -> float:
    """Infarct incl. MVO (3+4) as % of the wall (2+3+4) over the whole stack; 0 without wall."""
    wall = int(np.isin(labels, WALL).sum())
    return 100.0 * int(np.isin(labels, (INFARCT, MVO)).sum()) / wall if wall else 0.0


def drop_small_infarct(labels: np.ndarray, min_percent: float | None) -> np.ndarray:
    """The whole stack: infarct and MVO below ``min_percent`` of the wall become normal myocardium.

    The share is of pixel counts on one grid, hence of volumes (the slices of a stack share their
    thickness). ``min_percent`` None or <= 0 changes nothing.
    """
    a = np.array(labels, copy=True)
    if min_percent and min_percent > 0 and 0 < infarct_percent(a) < min_percent:
        a[np.isin(a, (INFARCT, MVO))] = MYOCARDIUM
    return a


def apply_rules(labels: np.ndarray) -> np.ndarray:
    """All rules in order: largest heart component, cavity holes, infarct in wall, MVO in infarct, heart holes."""
    out = keep_largest_heart_component(labels)
    out = fill_cavity_holes(out)
    out = infarct_within_myocardium(out)
    out = mvo_within_infarct(out)
    out = fill_heart_holes(out)
    return out.astype(np.uint8)
