"""A synthetic cardiac MR study with known labels: an LGE short-axis stack and its cine.

The phantom is a thorax (body, lungs, liver) around a left ventricle (blood pool, myocardial
ring thinning towards the apex), a right ventricle, a subendocardial infarct with a
microvascular-obstruction core on the mid slices. Signal levels follow an inversion-recovery LGE
acquisition (normal myocardium nulled, infarct brighter than blood, MVO dark), with a smooth
coil-sensitivity field and Rician noise. The geometry is an oblique short-axis stack (slices
ordered along the normal), and labels use the EMIDEC classes (0 background, 1 LV cavity,
2 myocardium, 3 infarct, 4 MVO), in the same slice order as `models.io.load_dicom_series`
reads the files back.

Everything is derived from ``seed``: same seed, same pixels, same UIDs, same bytes.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy.ndimage import gaussian_filter

from dicomstudy.write import StudyContext, write_enhanced_series, write_series, write_stack_series
from models.volume import Volume

__all__ = ["Phantom", "SyntheticStudy", "synthetic_volume", "write_synthetic_study", "write_synthetic_long_series"]

BACKGROUND, CAVITY, MYOCARDIUM, INFARCT, MVO = 0, 1, 2, 3, 4


@dataclass(frozen=True)
class Phantom:
    """Shape and acquisition of the synthetic study (millimetres unless stated).

    The defaults give a 10-slice stack of 192 x 192 pixels at 1.4 mm: an adult LV with an
    anterior-septal infarct on the mid slices.
    """

    slices: int = 10
    rows: int = 192
    cols: int = 192
    pixel_spacing: float = 1.4
    slice_spacing: float = 10.0
    slice_thickness: float = 8.0
    cavity_radius: tuple[float, float] = (25.0, 10.0)  # base, apex
    wall_thickness: tuple[float, float] = (9.0, 7.0)  # base, apex
    infarct_angles_deg: tuple[float, float] = (10.0, 120.0)  # sector, counter-clockwise from +row
    infarct_slices: tuple[float, float] = (0.2, 0.8)  # fraction of the stack (base = 0)
    infarct_transmurality: float = 0.75
    mvo_slices: tuple[float, float] = (0.3, 0.7)
    noise: float = 18.0


@dataclass
class SyntheticStudy:
    """Files, volumes and ground truth of a written synthetic study."""

    root: Path
    lge_files: list[Path]
    lge_volume: Volume
    labels: np.ndarray  # (slices, rows, cols) uint8, EMIDEC classes, in `lge_volume` order
    cine_files: list[Path] = field(default_factory=list)
    cine_volume: Volume | None = None
    context: StudyContext | None = None

    @property
    def lge_dir(self) -> Path:
        return self.lge_files[0].parent

    @property
    def cine_dir(self) -> Path | None:
        return self.cine_files[0].parent if self.cine_files else None


def _orientation(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Row and column directions of a plausible short-axis plane (double-oblique)."""
    # The LV long axis points from base to apex: left, anterior and inferior in LPS.
    axis = np.array([0.60, -0.50, -0.62]) + rng.normal(0.0, 0.03, 3)
    axis /= np.linalg.norm(axis)
    row = np.cross(axis, [0.0, 0.0, 1.0])
    row /= np.linalg.norm(row)
    col = np.cross(axis, row)
    return row, col


def _label_slice(ph: Phantom, frac: float, yy: np.ndarray, xx: np.ndarray, centre: tuple[float, float]
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Labels (EMIDEC classes) and a right-ventricle mask of one slice at ``frac`` (0 base, 1 apex)."""
    taper = frac ** 1.5  # the LV narrows mostly towards the apex
    r_in = ph.cavity_radius[0] + (ph.cavity_radius[1] - ph.cavity_radius[0]) * taper
    wall = ph.wall_thickness[0] + (ph.wall_thickness[1] - ph.wall_thickness[0]) * frac
    dy, dx = yy - centre[0], xx - centre[1]
    # Slightly elliptical LV, as in a real short-axis view.
    r = np.hypot(dy / 1.05, dx / 0.95)
    angle = np.degrees(np.arctan2(-dy, dx)) % 360.0
    labels = np.zeros(yy.shape, np.uint8)
    labels[r < r_in] = CAVITY
    labels[(r >= r_in) & (r < r_in + wall)] = MYOCARDIUM
    lo, hi = ph.infarct_angles_deg
    in_sector = (angle >= lo) & (angle <= hi)
    if ph.infarct_slices[0] <= frac <= ph.infarct_slices[1]:
        depth = wall * ph.infarct_transmurality
        labels[in_sector & (r >= r_in) & (r < r_in + depth)] = INFARCT
        if ph.mvo_slices[0] <= frac <= ph.mvo_slices[1]:
            mid = (lo + hi) / 2.0
            core = (np.abs(angle - mid) <= (hi - lo) / 4.0) & (r >= r_in) & (r < r_in + depth * 0.6)
            labels[core] = MVO
    # RV: a crescent on the septal side (towards -row), outside the LV wall.
    rv_centre = (centre[0] + 4.0, centre[1] - (r_in + wall) * 1.15)
    rv = (np.hypot((yy - rv_centre[0]) / 1.5, (xx - rv_centre[1]) / 0.85) < r_in * 1.1) & (r >= r_in + wall + 3.0)
    return labels, rv


def _lge_signal(labels: np.ndarray, rv: np.ndarray, yy: np.ndarray, xx: np.ndarray,
                fov: tuple[float, float], rng: np.random.Generator, noise: float) -> np.ndarray:
    h, w = fov
    body = np.hypot((yy - h * 0.5) / (h * 0.40), (xx - w * 0.5) / (w * 0.47)) < 1.0
    fat = body & ~(np.hypot((yy - h * 0.5) / (h * 0.37), (xx - w * 0.5) / (w * 0.44)) < 1.0)
    lungs = (np.hypot((yy - h * 0.47) / (h * 0.2), (xx - w * 0.25) / (w * 0.1)) < 1.0) | \
            (np.hypot((yy - h * 0.45) / (h * 0.19), (xx - w * 0.78) / (w * 0.09)) < 1.0)
    liver = np.hypot((yy - h * 0.84) / (h * 0.12), (xx - w * 0.35) / (w * 0.22)) < 1.0
    img = np.zeros(labels.shape, np.float32)
    img[body] = 230.0  # skeletal muscle, mediastinum
    img[fat] = 620.0
    img[lungs & body] = 25.0
    img[liver & body] = 330.0
    img[rv & body] = 520.0
    img[labels == CAVITY] = 540.0
    img[labels == MYOCARDIUM] = 45.0  # nulled
    img[labels == INFARCT] = 880.0
    img[labels == MVO] = 70.0
    img = gaussian_filter(img, 0.8)  # the acquisition's point spread
    coil = 1.0 + 0.25 * np.cos(2 * np.pi * (yy / h - 0.3)) * np.cos(np.pi * (xx / w - 0.5))
    re = img * coil + rng.normal(0.0, noise, img.shape)
    im = rng.normal(0.0, noise, img.shape)
    return np.hypot(re, im)


def synthetic_volume(phantom: Phantom | None = None, *, seed: int = 0, cine: bool = False
                     ) -> tuple[Volume, np.ndarray]:
    """The LGE (or, with ``cine``, a bright-blood cine-like) volume and its labels.

    Parameters
    ----------
    phantom:
        Shape and acquisition; `Phantom()` by default.
    seed:
        Seeds the orientation jitter, the heart's position and the noise.
    cine:
        Image the same anatomy with cine-like contrast (bright blood, grey myocardium, no
        enhancement) instead of LGE.

    Returns
    -------
    tuple[models.volume.Volume, numpy.ndarray]
        The volume (uint16 pixels, slices ascending along the normal) and ``(slices, rows,
        cols)`` uint8 labels in the same order.
    """
    ph = phantom or Phantom()
    rng = np.random.default_rng(seed)
    row, col = _orientation(rng)
    normal = np.cross(row, col)
    ps = ph.pixel_spacing
    yy, xx = np.mgrid[0:ph.rows, 0:ph.cols].astype(np.float32) * ps
    fov = (ph.rows * ps, ph.cols * ps)
    centre = (fov[0] * 0.48 + rng.uniform(-4, 4), fov[1] * 0.55 + rng.uniform(-4, 4))
    pixels, labels = [], []
    for k in range(ph.slices):
        frac = k / max(ph.slices - 1, 1)
        lab, rv = _label_slice(ph, frac, yy, xx, centre)
        if cine:
            cine_lab = np.where(lab >= MYOCARDIUM, MYOCARDIUM, lab).astype(np.uint8)
            img = _lge_signal(cine_lab, rv, yy, xx, fov, rng, ph.noise)
            img = np.where(cine_lab == MYOCARDIUM, img * 2.6, img)  # grey myocardium, no scar
        else:
            img = _lge_signal(lab, rv, yy, xx, fov, rng, ph.noise)
        pixels.append(np.clip(np.rint(img), 0, 4095).astype(np.uint16))
        labels.append(lab)
    # Slice k sits k * spacing along the normal from the basal slice (the stack's order on disk).
    centre_mm = np.array([-20.0, 15.0, 40.0]) + rng.normal(0.0, 2.0, 3)
    first = centre_mm - (ph.cols - 1) / 2.0 * ps * row - (ph.rows - 1) / 2.0 * ps * col
    positions = np.array([first + k * ph.slice_spacing * normal for k in range(ph.slices)])
    volume = Volume(np.stack(pixels), (ps, ps), row, col, positions,
                    slice_spacing=ph.slice_spacing, slice_thickness=ph.slice_thickness)
    return volume, np.stack(labels)


def write_synthetic_study(out_dir: str | os.PathLike[str], *, seed: int = 0, phantom: Phantom | None = None,
                          with_cine: bool = True, enhanced: bool = False,
                          case_id: str | None = None) -> SyntheticStudy:
    """Write a synthetic study: ``out_dir/LGE_SAX/`` and (``with_cine``) ``out_dir/CINE_SAX/``.

    Parameters
    ----------
    out_dir:
        Folder for the series (created).
    seed:
        Derives pixels and UIDs; equal seeds give byte-identical files.
    phantom:
        Shape and acquisition; `Phantom()` by default.
    with_cine:
        Also write a cine series of the same study and frame of reference (which the node's LGE
        rules ignore).
    enhanced:
        Write each series as one Enhanced MR multi-frame instance instead of one file a slice.
    case_id:
        Identifies the study (``PatientID`` ``SYNTH-<case_id>``); ``PHANTOM<seed>`` by default.

    Returns
    -------
    SyntheticStudy
        The files, the volumes as written and the LGE labels.
    """
    ctx = StudyContext(case_id or f"PHANTOM{seed}", seed=seed)
    out = Path(out_dir)
    writer = write_enhanced_series if enhanced else write_series
    lge, labels = synthetic_volume(phantom, seed=seed)
    study = SyntheticStudy(out, writer(lge, out / "LGE_SAX", ctx, "lge"), lge, labels, context=ctx)
    if with_cine:
        cine, _ = synthetic_volume(phantom, seed=seed, cine=True)
        study.cine_files = writer(cine, out / "CINE_SAX", ctx, "cine")
        study.cine_volume = cine
    return study


def write_synthetic_long_series(n: int, out_dir: str | os.PathLike[str], *, rows: int = 256, cols: int = 256,
                                seed: int = 0, slice_spacing: float = 1.0) -> list[Path]:
    """One classic MR series of ``n`` synthetic LGE slices (``rows x cols``), written quickly.

    For benchmarks: the slices of one phantom stack are used in turn, ``slice_spacing`` mm apart
    (see `dicomstudy.write.write_stack_series`). Returns the files in slice order.
    """
    volume, _ = synthetic_volume(Phantom(rows=rows, cols=cols, pixel_spacing=320.0 / max(rows, cols)), seed=seed)
    return write_stack_series(volume.pixels, volume, n, out_dir, StudyContext(f"BENCH{n}", seed=seed),
                              slice_spacing=slice_spacing)
