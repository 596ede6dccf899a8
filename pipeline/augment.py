"""Data augmentation for 2-D slices: numpy/scipy only, seeded, image and mask kept consistent.

Spatial augmentation and the ROI crop are one resampling step: each output pixel ``(u, v)`` of
an ``(h, w)`` patch reads the source slice at

    centre + M @ ((u, v) - (h // 2, w // 2)) + shift + elastic(u, v)

so rotation, flips, (anisotropic) scaling, elastic deformation and crop-centre jitter cost a
single ``map_coordinates`` call for the whole batch, and nothing is truncated at image borders
(outside the slice reads ``cval``). With ``M = I`` and no shift/elastic this is exactly a crop of
``(h, w)`` starting at ``centre - (h // 2, w // 2)``, padded with ``cval`` (the ROI-crop rule of
``models.preprocess``).

Anisotropic scaling matters for EMIDEC: its PNG slices were stretched to 256x256 from
non-square matrices (LV x/y extent ratio 0.45-2.45 per case), while real DICOM has square
pixels, so the network must not learn a fixed aspect ratio.

Intensity augmentation (gamma, contrast/brightness, bias field, noise) works on any intensity
scale: gamma and the bias field are applied to the per-patch min-max range and mapped back.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy import ndimage


@dataclass(frozen=True)
class AugmentConfig:
    p_rotate: float = 1.0
    max_rotation_deg: float = 180.0
    p_flip: float = 0.5
    p_scale: float = 0.8
    scale_range: tuple[float, float] = (0.8, 1.25)  # isotropic zoom, log-uniform
    p_anisotropy: float = 0.8
    anisotropy_range: tuple[float, float] = (0.6, 1.67)  # row/col scale ratio, log-uniform
    max_shift_px: float = 8.0  # crop-centre jitter (localiser error)
    p_elastic: float = 0.3
    elastic_alpha_px: float = 4.0  # std of the coarse displacement
    elastic_grid: int = 5
    p_gamma: float = 0.5
    gamma_range: tuple[float, float] = (0.7, 1.5)
    p_contrast: float = 0.5
    contrast_range: tuple[float, float] = (0.75, 1.3)
    brightness_std: float = 0.1  # in units of the patch std
    p_bias: float = 0.3
    bias_strength: float = 0.3  # std of the log bias field
    bias_grid: int = 4
    p_noise: float = 0.3
    noise_std_range: tuple[float, float] = (0.0, 0.08)  # in units of the patch std

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


NO_AUGMENT = AugmentConfig(p_rotate=0, p_flip=0, p_scale=0, p_anisotropy=0, max_shift_px=0,
                           p_elastic=0, p_gamma=0, p_contrast=0, p_bias=0, p_noise=0)


def _loguniform(rng: np.random.Generator, lo: float, hi: float, n: int) -> np.ndarray:
    return np.exp(rng.uniform(np.log(lo), np.log(hi), n))


def random_matrices(rng: np.random.Generator, n: int, cfg: AugmentConfig) -> np.ndarray:
    """(n, 2, 2) sampling matrices: rotation @ flip @ diag(row scale, col scale)."""
    theta = np.where(rng.random(n) < cfg.p_rotate,
                     np.deg2rad(rng.uniform(-cfg.max_rotation_deg, cfg.max_rotation_deg, n)), 0.0)
    zoom = np.where(rng.random(n) < cfg.p_scale, _loguniform(rng, *cfg.scale_range, n), 1.0)
    ratio = np.where(rng.random(n) < cfg.p_anisotropy,
                     _loguniform(rng, *cfg.anisotropy_range, n), 1.0)
    flip = np.where(rng.random(n) < cfg.p_flip, -1.0, 1.0)
    # Sampling step in source pixels per output pixel: >1 shrinks the anatomy in the patch.
    s_row, s_col = zoom * np.sqrt(ratio), zoom / np.sqrt(ratio)
    c, s = np.cos(theta), np.sin(theta)
    m = np.empty((n, 2, 2))
    m[:, 0, 0], m[:, 0, 1] = c * s_row, -s * s_col * flip
    m[:, 1, 0], m[:, 1, 1] = s * s_row, c * s_col * flip
    return m


def elastic_displacements(rng: np.random.Generator, n: int, out_shape: tuple[int, int],
                          cfg: AugmentConfig) -> np.ndarray | None:
    """(n, 2, h, w) smooth displacement fields (cubic upsampling of a coarse random grid)."""
    active = rng.random(n) < cfg.p_elastic
    if not active.any() or cfg.elastic_alpha_px <= 0:
        return None
    g = max(2, cfg.elastic_grid)
    coarse = rng.normal(0.0, cfg.elastic_alpha_px, (n, 2, g, g)) * active[:, None, None, None]
    h, w = out_shape
    return _upsample(coarse, (h, w))


def _upsample(coarse: np.ndarray, out_shape: tuple[int, int]) -> np.ndarray:
    """Cubic-spline upsampling of the last two axes to ``out_shape``, as two small matrix
    products (a 4-D ``ndimage.zoom`` would interpolate across the batch axes too: ~50x slower)."""
    h, w = out_shape
    wr = _zoom_matrix(coarse.shape[-2], h)
    wc = _zoom_matrix(coarse.shape[-1], w)
    return np.einsum("hi,...ij,wj->...hw", wr, coarse, wc, optimize=True)


_ZOOM_CACHE: dict[tuple[int, int], np.ndarray] = {}


def _zoom_matrix(n_in: int, n_out: int) -> np.ndarray:
    # ndimage.zoom is linear: zooming the identity gives its (n_out, n_in) matrix.
    key = (n_in, n_out)
    if key not in _ZOOM_CACHE:
        _ZOOM_CACHE[key] = ndimage.zoom(np.eye(n_in), (n_out / n_in, 1), order=3,
                                        mode="nearest", grid_mode=True)[:n_out]
    return _ZOOM_CACHE[key]


def sample_coordinates(centres: np.ndarray, out_shape: tuple[int, int],
                       matrices: np.ndarray | None = None, shifts: np.ndarray | None = None,
                       displacements: np.ndarray | None = None) -> np.ndarray:
    """(2, n, h, w) source (row, col) coordinates of every output pixel."""
    centres = np.asarray(centres, dtype=np.float64).reshape(-1, 2)
    n = centres.shape[0]
    h, w = out_shape
    off = np.stack(np.meshgrid(np.arange(h) - h // 2, np.arange(w) - w // 2, indexing="ij"))
    if matrices is None:
        coords = np.broadcast_to(off[:, None], (2, n, h, w)).astype(np.float64)
    else:
        coords = np.einsum("nij,jhw->inhw", matrices, off.astype(np.float64))
    coords = coords + centres.T[:, :, None, None]
    if shifts is not None:
        coords = coords + np.asarray(shifts, dtype=np.float64).T[:, :, None, None]
    if displacements is not None:
        coords = coords + np.moveaxis(displacements, 1, 0)
    return coords


def warp(images: np.ndarray, masks: np.ndarray | None, coords: np.ndarray,
         cval: float = 0.0) -> tuple[np.ndarray, np.ndarray | None]:
    """Resample a batch of slices (n, H, W) at ``coords`` (2, n, h, w): linear for images,
    nearest for label masks (outside -> ``cval`` / background 0)."""
    # A 2-D call per slice: linear interpolation over (row, col) only (a single 3-D call would
    # also weigh the batch axis: twice the taps for the same result).
    images = np.asarray(images, dtype=np.float32)
    img = np.stack([ndimage.map_coordinates(images[k], coords[:, k], order=1, mode="constant",
                                            cval=cval, prefilter=False)
                    for k in range(images.shape[0])])
    msk = None
    if masks is not None:
        masks = np.asarray(masks, dtype=np.uint8)
        msk = np.stack([ndimage.map_coordinates(masks[k], coords[:, k], order=0,
                                                mode="constant", cval=0, prefilter=False)
                        for k in range(masks.shape[0])])
    return img.astype(np.float32), msk


def crop_batch(images: np.ndarray, masks: np.ndarray | None, centres: np.ndarray,
               out_shape: tuple[int, int], cval: float = 0.0
               ) -> tuple[np.ndarray, np.ndarray | None]:
    """Plain padded crops (no augmentation), same rule as the inference ROI crop."""
    return warp(images, masks, sample_coordinates(np.rint(centres), out_shape), cval)


def augment_intensity(images: np.ndarray, rng: np.random.Generator,
                      cfg: AugmentConfig) -> np.ndarray:
    """Gamma, contrast/brightness, multiplicative bias field and Gaussian noise, per patch."""
    x = np.asarray(images, dtype=np.float32).copy()
    n = x.shape[0]
    axes = tuple(range(1, x.ndim))
    lo = x.min(axis=axes, keepdims=True)
    hi = x.max(axis=axes, keepdims=True)
    span = np.maximum(hi - lo, 1e-6)

    gam = np.where(rng.random(n) < cfg.p_gamma, _loguniform(rng, *cfg.gamma_range, n), 1.0)
    gam = gam.reshape((n,) + (1,) * (x.ndim - 1)).astype(np.float32)
    x = lo + span * np.power(np.clip((x - lo) / span, 0.0, 1.0), gam)

    if cfg.p_bias > 0 and cfg.bias_strength > 0:
        active = rng.random(n) < cfg.p_bias
        coarse = rng.normal(0.0, cfg.bias_strength, (n, cfg.bias_grid, cfg.bias_grid))
        if active.any():
            field = np.exp(_upsample(coarse * active[:, None, None], x.shape[1:3]))
            field = field.reshape(x.shape).astype(np.float32)
            x = lo + (x - lo) * field

    std = np.maximum(x.std(axis=axes, keepdims=True), 1e-6)
    mean = x.mean(axis=axes, keepdims=True)
    con = np.where(rng.random(n) < cfg.p_contrast, _loguniform(rng, *cfg.contrast_range, n), 1.0)
    bri = np.where(rng.random(n) < cfg.p_contrast, rng.normal(0.0, cfg.brightness_std, n), 0.0)
    shape = (n,) + (1,) * (x.ndim - 1)
    x = mean + (x - mean) * con.reshape(shape) + bri.reshape(shape) * std

    sig = np.where(rng.random(n) < cfg.p_noise, rng.uniform(*cfg.noise_std_range, n), 0.0)
    if np.any(sig > 0):
        x = x + rng.normal(0.0, 1.0, x.shape).astype(np.float32) * (sig.reshape(shape) * std)
    return x.astype(np.float32)


def random_warp(images: np.ndarray, masks: np.ndarray | None, centres: np.ndarray,
                out_shape: tuple[int, int], rng: np.random.Generator, cfg: AugmentConfig,
                cval: float = 0.0) -> tuple[np.ndarray, np.ndarray | None]:
    """One independent random spatial transform per slice (rotation, flip, scale, anisotropy,
    centre jitter, elastic), image and mask resampled together around ``centres``."""
    n = images.shape[0]
    mats = random_matrices(rng, n, cfg)
    shifts = rng.uniform(-cfg.max_shift_px, cfg.max_shift_px, (n, 2)) if cfg.max_shift_px else None
    disp = elastic_displacements(rng, n, out_shape, cfg)
    return warp(images, masks, sample_coordinates(centres, out_shape, mats, shifts, disp), cval)


class Augmenter:
    """Seeded batch augmenter: ``aug(images, masks, centres, out_shape) -> (x, y)``."""

    def __init__(self, cfg: AugmentConfig | None = None, seed: int | None = 0,
                 cval: float = 0.0) -> None:
        self.cfg = cfg or AugmentConfig()
        self.rng = np.random.default_rng(seed)
        self.cval = cval

    def __call__(self, images: np.ndarray, masks: np.ndarray | None, centres: np.ndarray,
                 out_shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray | None]:
        x, y = random_warp(images, masks, centres, out_shape, self.rng, self.cfg, self.cval)
        return augment_intensity(x, self.rng, self.cfg), y
