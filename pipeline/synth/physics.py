"""Physics baseline: label mask -> LGE-like image with no training.

Inversion-recovery magnitude signal per tissue, S = PD * |1 - 2 exp(-TI / T1)|, with TI set to null
normal myocardium (TI = T1_myo ln 2, plus a small error: real nulling is imperfect). Post-contrast
T1: infarct < blood < myocardium <= MVO, so scar and blood are bright, myocardium black and the
no-reflow core (little gadolinium: T1 at or a little above the myocardium's) dark. Surrounding tissue is a smooth random T1 field with air/lung
patches. Then partial-volume blur (Gaussian), a smooth multiplicative coil bias field and Rician
noise (magnitude of complex Gaussian noise). All parameters are drawn per image from the ranges
of ``RenderConfig`` (the ``render`` section of pipeline/configs/simulate.yaml). The output is
normalised with ``models.preprocess.normalize_intensity``, like segmenter input.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import ndimage

import models.preprocess as pp

Range = tuple[float, float]


@dataclass
class RenderConfig:
    t1_myocardium_ms: Range = (420.0, 560.0)
    t1_blood_ms: Range = (260.0, 360.0)
    t1_infarct_ms: Range = (200.0, 300.0)
    t1_mvo_ratio: Range = (1.0, 1.3)
    t1_background_ms: Range = (220.0, 400.0)
    pd_tissue: Range = (0.8, 1.0)
    ti_error: Range = (-0.1, 0.05)
    air_fraction: Range = (0.1, 0.3)
    snr_blood: Range = (12.0, 40.0)
    bias_amplitude: Range = (0.0, 0.35)
    blur_sigma_px: Range = (0.5, 1.2)

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> "RenderConfig":
        d = dict(d or {})
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ValueError(f"unknown render keys: {sorted(unknown)}")
        return cls(**{k: (float(v[0]), float(v[1])) for k, v in d.items()})


def ir_signal(t1_ms: np.ndarray | float, ti_ms: float, pd: np.ndarray | float = 1.0) -> np.ndarray:
    """Inversion-recovery magnitude signal PD |1 - 2 exp(-TI/T1)| (full recovery between inversions)."""
    return np.asarray(pd) * np.abs(1.0 - 2.0 * np.exp(-ti_ms / np.asarray(t1_ms, float)))


def _smooth_field(rng: np.random.Generator, shape: tuple[int, int], sigma: float) -> np.ndarray:
    """Smooth random field scaled to [0, 1]."""
    f = ndimage.gaussian_filter(rng.standard_normal(shape), sigma, mode="wrap")
    lo, hi = f.min(), f.max()
    return (f - lo) / max(hi - lo, 1e-9)


def sample_params(rng: np.random.Generator, cfg: RenderConfig) -> dict[str, float]:
    return {f.name: float(rng.uniform(*getattr(cfg, f.name))) for f in dataclasses.fields(cfg)}


def render(mask: np.ndarray, rng: np.random.Generator, cfg: RenderConfig | None = None,
           normalise: bool = True) -> tuple[np.ndarray, dict[str, float]]:
    """(image (H, W) float32, the parameters drawn) for a 0-4 label mask."""
    cfg = cfg or RenderConfig()
    p = sample_params(rng, cfg)
    m = np.asarray(mask)
    shape = m.shape
    ti = p["t1_myocardium_ms"] * np.log(2.0) * (1.0 + p["ti_error"])
    p["ti_ms"] = float(ti)
    lo, hi = cfg.t1_background_ms
    t1 = lo + (hi - lo) * _smooth_field(rng, shape, 6.0)
    pd = np.full(shape, p["pd_tissue"])
    air = _smooth_field(rng, shape, 10.0) < p["air_fraction"]
    pd[air] = 0.02
    p["t1_mvo_ms"] = p["t1_myocardium_ms"] * p["t1_mvo_ratio"]
    for label, key in ((1, "t1_blood_ms"), (2, "t1_myocardium_ms"), (3, "t1_infarct_ms"), (4, "t1_mvo_ms")):
        t1[m == label] = p[key]
        pd[m == label] = 1.0 if label == 1 else p["pd_tissue"]
    s = ir_signal(t1, ti, pd)
    s = ndimage.gaussian_filter(s, p["blur_sigma_px"])
    bias = 1.0 + p["bias_amplitude"] * (2.0 * _smooth_field(rng, shape, shape[0] / 3.0) - 1.0)
    s = s * bias
    sigma = float(ir_signal(p["t1_blood_ms"], ti)) / p["snr_blood"]
    img = np.hypot(s + rng.normal(0, sigma, shape), rng.normal(0, sigma, shape))
    if normalise:
        img = pp.normalize_intensity(img)
    return img.astype(np.float32), p


def render_many(masks: np.ndarray, seed: int, cfg: RenderConfig | None = None) -> np.ndarray:
    """Images for a stack of masks; image i uses default_rng([seed, i, 1]) (independent of the mask sampler)."""
    return np.stack([render(m, np.random.default_rng([int(seed), i, 1]), cfg)[0] for i, m in enumerate(masks)])


def figure_grid(real_images: np.ndarray, real_masks: np.ndarray, synth_images: np.ndarray,
                synth_masks: np.ndarray, path: str, n: int = 6) -> str:
    """PNG grid: rows of (real image, real mask, physics image of that real mask, synthetic mask, its image)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from matplotlib.colors import ListedColormap

    from models.overlay import COLOURS

    labels_cmap = ListedColormap([np.array(COLOURS.get(k, (0, 0, 0))) / 255.0 for k in range(5)])

    n = min(n, len(real_images), len(synth_images))
    cols = ("real image", "real mask", "physics(real mask)", "simulated mask", "physics(simulated)")
    fig, axes = plt.subplots(n, 5, figsize=(10, 2 * n))
    axes = np.atleast_2d(axes)
    rng = np.random.default_rng(0)
    for i in range(n):
        phys_real = render(real_masks[i], rng)[0]
        panels = (real_images[i], real_masks[i], phys_real, synth_masks[i], synth_images[i])
        for j, (ax, im) in enumerate(zip(axes[i], panels)):
            is_mask = j in (1, 3)
            ax.imshow(im, cmap=labels_cmap if is_mask else "gray", vmin=0, vmax=4 if is_mask else pp.CLIP_MAX,
                      interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(cols[j], fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path
