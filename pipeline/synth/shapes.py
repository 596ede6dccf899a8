"""LV geometry on the 128x128 ROI grid: radial profiles, a PCA shape model learned from real masks,
AHA sectors / coronary territories, transmural depth, and the bank of real development masks.

Conventions
-----------
* Labels 0 background, 1 LV cavity, 2 normal myocardium, 3 infarct, 4 MVO (models/ contract).
* ROI as in ``models.preprocess``: 128x128 crop centred on the LV centroid (labels 1-4) of the
  whole stack; one EMIDEC pixel == ``TARGET_SPACING_MM`` (1.25 mm), no resampling.
* Angles are bull's-eye angles in degrees: 0 at 3 o'clock (image right), counter-clockwise on the
  displayed image (rows grow downwards), i.e. standard short-axis display with anterior up and the
  septum on the image left. AHA segments (Cerqueira 2002): basal/mid 60 deg sectors starting at
  60 deg (anterior 60-120, anteroseptal 120-180, inferoseptal 180-240, inferior 240-300,
  inferolateral 300-360, anterolateral 0-60); apical 90 deg sectors starting at 45 deg (anterior,
  septal, inferior, lateral). EMIDEC carries no RV label, so this orientation is an assumption
  (``rotation_deg`` in the config turns the whole convention).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy import ndimage

import models.preprocess as pp

ROI = pp.ROI_SIZE
LEVELS = ("basal", "mid", "apical")

# AHA 17-segment model -> coronary territory (Cerqueira et al., Circulation 2002).
TERRITORY_SEGMENTS: dict[str, frozenset[int]] = {
    "LAD": frozenset({1, 2, 7, 8, 13, 14, 17}),
    "RCA": frozenset({3, 4, 9, 10, 15}),
    "LCx": frozenset({5, 6, 11, 12, 16}),
}


# ---------------------------------------------------------------------------------------------
# Angles, AHA segments, territories
# ---------------------------------------------------------------------------------------------
def bullseye_angle(rows: np.ndarray, cols: np.ndarray, centre: tuple[float, float],
                   rotation_deg: float = 0.0) -> np.ndarray:
    """Bull's-eye angle (deg, [0, 360)) of pixel positions around ``centre`` (row, col)."""
    a = np.degrees(np.arctan2(-(np.asarray(rows, float) - centre[0]), np.asarray(cols, float) - centre[1]))
    return np.mod(a - rotation_deg, 360.0)


def aha_segment(angle_deg: np.ndarray, level: str) -> np.ndarray:
    """AHA segment number(s) (1-16) of bull's-eye angles at a slice level."""
    a = np.asarray(angle_deg, float)
    if level == "apical":
        return (np.floor(np.mod(a - 45.0, 360.0) / 90.0).astype(int) + 13)
    base = 0 if level == "basal" else 6
    return np.floor(np.mod(a - 60.0, 360.0) / 60.0).astype(int) + 1 + base


def territory_of_segment(seg: int) -> str:
    for name, segs in TERRITORY_SEGMENTS.items():
        if seg in segs:
            return name
    raise ValueError(f"segment {seg} has no territory")


def territory_arc(territory: str, level: str) -> tuple[float, float]:
    """(start, width) in degrees of the territory's contiguous arc at a slice level."""
    step, first = (90.0, 45.0) if level == "apical" else (60.0, 60.0)
    n = int(round(360.0 / step))
    inside = [territory_of_segment(int(aha_segment(np.array(first + (k + 0.5) * step), level))) == territory
              for k in range(n)]
    ks = [k for k in range(n) if inside[k]]
    if not ks:
        raise ValueError(f"{territory} absent at {level} level")
    # Start at the first sector whose predecessor is outside (arcs are contiguous on the circle).
    start = next(k for k in ks if not inside[(k - 1) % n])
    return float(np.mod(first + start * step, 360.0)), float(len(ks) * step)


def level_of_position(t: float) -> str:
    """Slice level from the relative position in the stack (0 = first/basal, 1 = last/apical)."""
    return LEVELS[min(int(t * 3.0), 2)]


# ---------------------------------------------------------------------------------------------
# Radial profiles and the shape model
# ---------------------------------------------------------------------------------------------
def lv_centroid(mask: np.ndarray) -> tuple[float, float] | None:
    lv = np.asarray(mask) > 0
    if not lv.any():
        return None
    r, c = ndimage.center_of_mass(lv)
    return float(r), float(c)


def radial_profiles(mask: np.ndarray, n_angles: int = 64,
                    centre: tuple[float, float] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Endo- and epicardial radii (px) per angle bin, measured from the LV centroid.

    Radius of a bin = farthest cavity (endo) / LV (epi) pixel whose centre falls in the bin (+0.5 px
    for the pixel extent); empty bins are filled by circular interpolation. A slice without cavity
    (apex) has endo radius 0.
    """
    mask = np.asarray(mask)
    centre = centre or lv_centroid(mask)
    if centre is None:
        raise ValueError("empty mask")
    rr, cc = np.nonzero(mask > 0)
    ang = bullseye_angle(rr, cc, centre)
    rad = np.hypot(rr - centre[0], cc - centre[1]) + 0.5
    b = np.minimum((ang / 360.0 * n_angles).astype(int), n_angles - 1)
    epi = np.full(n_angles, np.nan)
    endo = np.zeros(n_angles)
    np.fmax.at(epi, b, rad)
    cav = mask[rr, cc] == 1
    np.maximum.at(endo, b[cav], rad[cav])
    epi = _fill_circular(epi)
    endo = np.minimum(endo, epi - 1.0).clip(min=0.0)
    return endo, epi


def _fill_circular(x: np.ndarray) -> np.ndarray:
    ok = ~np.isnan(x)
    if ok.all():
        return x
    idx = np.arange(x.size)
    good = idx[ok]
    return np.interp(idx, np.r_[good - x.size, good, good + x.size], np.r_[x[ok], x[ok], x[ok]])


def mask_from_profiles(endo: np.ndarray, epi: np.ndarray, centre: tuple[float, float],
                       size: int = ROI) -> np.ndarray:
    """Labels (size, size) u8: cavity where r <= endo(angle), myocardium where endo < r <= epi."""
    rr, cc = np.mgrid[0:size, 0:size].astype(np.float64)
    ang = bullseye_angle(rr, cc, centre)
    r = np.hypot(rr - centre[0], cc - centre[1])
    n = endo.size
    pos = ang / 360.0 * n - 0.5  # bin centres at (k + 0.5) * 360 / n
    k0 = np.floor(pos).astype(int)
    w = pos - k0
    e_endo = (1 - w) * endo[k0 % n] + w * endo[(k0 + 1) % n]
    e_epi = (1 - w) * epi[k0 % n] + w * epi[(k0 + 1) % n]
    out = np.zeros((size, size), np.uint8)
    out[r <= e_epi] = 2
    out[(r <= e_endo) & (e_endo >= 1.0)] = 1
    return out


@dataclass
class LevelModel:
    mean: np.ndarray  # (2 n_angles,) [endo, epi]
    components: np.ndarray  # (k, 2 n_angles) principal axes
    std: np.ndarray  # (k,) standard deviation along each axis
    n_train: int


@dataclass
class ShapeModel:
    """Per-level Gaussian in PCA space of concatenated [endo, epi] radial profiles."""

    n_angles: int
    levels: dict[str, LevelModel] = field(default_factory=dict)

    def sample(self, level: str, rng: np.random.Generator, clip_sd: float = 2.5,
               scale: float = 1.0, min_wall_px: float = 2.0) -> tuple[np.ndarray, np.ndarray]:
        """Random (endo, epi) radii at ``level``; coefficients clipped to +-clip_sd s.d."""
        m = self.levels[level]
        z = np.clip(rng.standard_normal(m.std.size), -clip_sd, clip_sd)
        v = m.mean + (z * m.std) @ m.components
        n = self.n_angles
        endo, epi = v[:n] * scale, v[n:] * scale
        endo = np.where(endo < 1.0, 0.0, endo)  # apex: no cavity rather than a 1-px speck
        epi = np.maximum(epi, endo + min_wall_px)
        return endo, epi

    def save(self, path: str | Path) -> None:
        arrays: dict[str, np.ndarray] = {"n_angles": np.array(self.n_angles)}
        for lv, m in self.levels.items():
            arrays.update({f"{lv}_mean": m.mean, f"{lv}_components": m.components,
                           f"{lv}_std": m.std, f"{lv}_n": np.array(m.n_train)})
        np.savez_compressed(path, **arrays)


def fit_shape_model(endo: np.ndarray, epi: np.ndarray, levels: list[str],
                    variance_kept: float = 0.95) -> ShapeModel:
    """PCA per level of profiles (N, n_angles) each; keeps ``variance_kept`` of the variance."""
    x = np.concatenate([endo, epi], axis=1)
    lv_arr = np.asarray(levels)
    model = ShapeModel(n_angles=endo.shape[1])
    for lv in LEVELS:
        xs = x[lv_arr == lv]
        if len(xs) < 3:
            continue
        mean = xs.mean(axis=0)
        _, s, vt = np.linalg.svd(xs - mean, full_matrices=False)
        var = s**2 / max(len(xs) - 1, 1)
        k = int(np.searchsorted(np.cumsum(var) / var.sum(), variance_kept) + 1)
        model.levels[lv] = LevelModel(mean, vt[:k], np.sqrt(var[:k]), len(xs))
    if not model.levels:
        raise ValueError("not enough slices to fit a shape model")
    return model


# ---------------------------------------------------------------------------------------------
# Transmural depth
# ---------------------------------------------------------------------------------------------
def wall_coordinates(mask: np.ndarray, centre: tuple[float, float] | None = None,
                     rotation_deg: float = 0.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For the myocardium (labels 2-4): (pixel indices (2, m), bull's-eye angle (m,), depth (m,)).

    depth = d_endo / (d_endo + d_epi) in [0, 1]: 0 at the endocardium, 1 at the epicardium, with
    d_endo the distance to the cavity (to the centre when there is none) and d_epi the distance to
    the outside of the LV.
    """
    mask = np.asarray(mask)
    centre = centre or lv_centroid(mask)
    myo = mask >= 2
    idx = np.nonzero(myo)
    if centre is None or not myo.any():
        return np.zeros((2, 0), int), np.zeros(0), np.zeros(0)
    cav = mask == 1
    if cav.any():
        d_endo = ndimage.distance_transform_edt(~cav)[idx] - 0.5
    else:
        d_endo = np.hypot(idx[0] - centre[0], idx[1] - centre[1])
    d_epi = ndimage.distance_transform_edt(mask > 0)[idx] - 0.5
    depth = np.clip(d_endo / np.maximum(d_endo + d_epi, 1e-6), 0.0, 1.0)
    ang = bullseye_angle(idx[0], idx[1], centre, rotation_deg)
    return np.asarray(idx), ang, depth


def lv_solidity(mask: np.ndarray) -> float:
    """LV area (labels 1-4) / area of its convex hull (pixel corners): 1 for convex shapes."""
    from scipy.spatial import ConvexHull

    lv = np.asarray(mask) > 0
    if lv.sum() < 3:
        return float("nan")
    edge = lv & ~ndimage.binary_erosion(lv)
    r, c = np.nonzero(edge)
    pts = np.concatenate([np.c_[r + dr, c + dc] for dr in (-0.5, 0.5) for dc in (-0.5, 0.5)]).astype(float)
    return float(lv.sum() / ConvexHull(pts).volume)


def wall_thickness_mm(mask: np.ndarray, n_angles: int = 64) -> float:
    """Mean radial wall thickness (mm) of a slice (nan without cavity: the apex cap has no wall)."""
    if not (np.asarray(mask) == 1).any():
        return float("nan")
    endo, epi = radial_profiles(np.asarray(mask), n_angles)
    return float(np.mean(epi - endo) * pp.TARGET_SPACING_MM)


# ---------------------------------------------------------------------------------------------
# Real development masks on the ROI grid
# ---------------------------------------------------------------------------------------------
@dataclass
class RealBank:
    masks: np.ndarray  # (N, 128, 128) u8, ROI crops as in training
    case_ids: list[str]
    positions: np.ndarray  # (N,) relative slice position in its stack, 0 basal .. 1 apical
    offsets: np.ndarray  # (N, 2) slice LV centroid minus ROI centre (px)

    @property
    def levels(self) -> list[str]:
        return [level_of_position(float(t)) for t in self.positions]

    def __len__(self) -> int:
        return len(self.masks)


def load_real_bank(data_dir: str | None = None, exclude_cases: set[str] | None = None,
                   min_lv_px: int = 50) -> RealBank:
    """EMIDEC development masks cropped to the ROI around each case's LV centroid (training convention).

    Slices with fewer than ``min_lv_px`` LV pixels are left out.
    """
    from pipeline.datasets import emidec

    files = emidec.slice_files(data_dir)
    masks, ids, pos, offs = [], [], [], []
    for cid, names in files.items():
        if exclude_cases and cid in exclude_cases:
            continue
        case = emidec.load_case(cid, data_dir, names)
        centre = pp.lv_centre_from_mask(case.masks)
        if centre is None:
            continue
        roi, _ = pp.crop_roi(case.masks, centre)
        n = len(roi)
        for k in range(n):
            if int((roi[k] > 0).sum()) < min_lv_px:
                continue
            c = lv_centroid(roi[k])
            masks.append(roi[k])
            ids.append(cid)
            pos.append(k / max(n - 1, 1))
            offs.append((c[0] - ROI // 2, c[1] - ROI // 2))
    if not masks:
        raise FileNotFoundError("no EMIDEC masks found")
    return RealBank(np.stack(masks).astype(np.uint8), ids, np.asarray(pos), np.asarray(offs))


def bank_profiles(bank: RealBank, n_angles: int) -> tuple[np.ndarray, np.ndarray]:
    ps = [radial_profiles(m, n_angles) for m in bank.masks]
    return np.stack([p[0] for p in ps]), np.stack([p[1] for p in ps])
