"""Image-synthesis metrics as pure numpy/scipy functions (no I/O, no networks).

* **KID** (Bińkowski et al. 2018, "Demystifying MMD GANs"): unbiased estimate of the squared MMD
  between two feature sets with the cubic polynomial kernel k(x, y) = (x·y / d + 1)^3, averaged over
  random subsets; reported as mean ± std over the subsets. Unbiased, so its expectation is 0 for two
  samples of one distribution whatever the sample size (single estimates can be negative).
* **Fréchet distance** between Gaussian fits (the FID formula, here in *our* feature space):
  ||mu1 - mu2||² + Tr(S1 + S2 - 2 (S1 S2)^½). Biased upwards for small samples, so compare values
  only at equal sample sizes.
* **PSNR / SSIM** of paired images on [0, 1]-clipped normalised images (scikit-image, data_range 1).
* **Dice per class** pooled over images (intersections and sizes summed before dividing), as
  ``pipeline.evaluate.metrics`` does for segmentations.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence

import numpy as np
from scipy import linalg

from pipeline.evaluate.metrics import dice_from_counts, overlap_counts

log = logging.getLogger(__name__)

FOREGROUND_CLASSES: tuple[int, ...] = (1, 2, 3, 4)


# --------------------------------------------------------------------------------------------
# KID
# --------------------------------------------------------------------------------------------
def polynomial_kernel(x: np.ndarray, y: np.ndarray, degree: int = 3, coef0: float = 1.0) -> np.ndarray:
    """k(x, y) = (x·y / d + coef0) ** degree for all row pairs; (n_x, n_y) float64."""
    x = np.asarray(x, np.float64)
    y = np.asarray(y, np.float64)
    return (x @ y.T / x.shape[1] + coef0) ** degree


def mmd2_unbiased(x: np.ndarray, y: np.ndarray) -> float:
    """Unbiased MMD² (polynomial kernel): diagonal terms k(x_i, x_i) are left out of the within-set means."""
    m, n = len(x), len(y)
    if m < 2 or n < 2:
        raise ValueError("MMD² needs at least two samples per set")
    kxx, kyy, kxy = polynomial_kernel(x, x), polynomial_kernel(y, y), polynomial_kernel(x, y)
    sxx = (kxx.sum() - np.trace(kxx)) / (m * (m - 1))
    syy = (kyy.sum() - np.trace(kyy)) / (n * (n - 1))
    return float(sxx + syy - 2.0 * kxy.mean())


def kid(x: np.ndarray, y: np.ndarray, n_subsets: int = 100, subset_size: int = 1000,
        seed: int = 0) -> tuple[float, float, int]:
    """Kernel Inception Distance in any feature space: (mean, std over subsets, subset size used).

    Each subset draws ``min(subset_size, len(x), len(y))`` rows from each set without replacement.
    """
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1]:
        raise ValueError(f"feature arrays must be (n, d) with equal d, got {x.shape} and {y.shape}")
    m = min(subset_size, len(x), len(y))
    rng = np.random.default_rng(seed)
    vals = np.array([
        mmd2_unbiased(x[rng.choice(len(x), m, replace=False)], y[rng.choice(len(y), m, replace=False)])
        for _ in range(n_subsets)
    ])
    return float(vals.mean()), float(vals.std()), int(m)


# --------------------------------------------------------------------------------------------
# Fréchet distance
# --------------------------------------------------------------------------------------------
def gaussian_fit(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(mean (d,), covariance (d, d)) of (n, d) features, float64; n - 1 normalisation."""
    f = np.asarray(features, np.float64)
    if f.ndim != 2 or len(f) < 2:
        raise ValueError(f"need (n >= 2, d) features, got {f.shape}")
    return f.mean(axis=0), np.atleast_2d(np.cov(f, rowvar=False))


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray,
                     eps: float = 1e-6) -> float:
    """Fréchet distance of N(mu1, sigma1) and N(mu2, sigma2).

    ``scipy.linalg.sqrtm`` of S1·S2 can fail or come out complex when the covariances are singular
    (fewer samples than feature dimensions, dead ReLU channels): then ``eps``·I is added to both
    and the distance of the regularised Gaussians is returned. Remaining imaginary parts are
    round-off and are dropped (with a warning if they are not small).
    """
    mu1, mu2 = np.atleast_1d(mu1).astype(np.float64), np.atleast_1d(mu2).astype(np.float64)
    s1, s2 = np.atleast_2d(sigma1).astype(np.float64), np.atleast_2d(sigma2).astype(np.float64)
    if mu1.shape != mu2.shape or s1.shape != s2.shape or s1.shape != (mu1.size, mu1.size):
        raise ValueError("mean/covariance shapes do not match")
    covmean, singular = _sqrtm(s1 @ s2)
    if singular or not np.isfinite(covmean).all() or _imag_excess(covmean):
        # The distance between the regularised Gaussians: identical inputs still give exactly 0.
        offset = np.eye(s1.shape[0]) * eps
        s1, s2 = s1 + offset, s2 + offset
        covmean, _ = _sqrtm(s1 @ s2)
    if np.iscomplexobj(covmean):
        if _imag_excess(covmean):
            log.warning("sqrtm has imaginary part up to %.3g; using its real part",
                        float(np.abs(covmean.imag).max()))
        covmean = covmean.real
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(s1) + np.trace(s2) - 2.0 * np.trace(covmean))


def _sqrtm(a: np.ndarray) -> tuple[np.ndarray, bool]:
    """scipy's matrix square root, and whether scipy warned that ``a`` is singular."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", linalg.LinAlgWarning)
        root = linalg.sqrtm(a)
    return root, any(issubclass(w.category, linalg.LinAlgWarning) for w in caught)


def _imag_excess(a: np.ndarray, tol: float = 1e-3) -> bool:
    """Imaginary part larger than ``tol`` relative to the matrix's scale."""
    if not np.iscomplexobj(a):
        return False
    scale = max(float(np.abs(a.real).max()), 1.0)
    return float(np.abs(a.imag).max()) > tol * scale


def frechet_distance_features(x: np.ndarray, y: np.ndarray) -> float:
    """Fréchet distance between Gaussian fits of two (n, d) feature sets."""
    return frechet_distance(*gaussian_fit(x), *gaussian_fit(y))


# --------------------------------------------------------------------------------------------
# Paired image similarity
# --------------------------------------------------------------------------------------------
def _unit(a: np.ndarray) -> np.ndarray:
    return np.clip(np.asarray(a, np.float64), 0.0, 1.0)


def psnr(image: np.ndarray, reference: np.ndarray) -> float:
    """PSNR (dB) of one image against its reference, both clipped to [0, 1]; inf if identical."""
    from skimage.metrics import peak_signal_noise_ratio

    ref, img = _unit(reference), _unit(image)
    if np.array_equal(ref, img):
        return float("inf")  # skimage would divide by a zero MSE
    return float(peak_signal_noise_ratio(ref, img, data_range=1.0))


def ssim(image: np.ndarray, reference: np.ndarray) -> float:
    """SSIM (scikit-image defaults: 7x7 uniform window) of one 2-D image against its reference on [0, 1]."""
    from skimage.metrics import structural_similarity

    return float(structural_similarity(_unit(reference), _unit(image), data_range=1.0))


def paired_similarity(images: np.ndarray, references: np.ndarray) -> dict[str, float | int]:
    """Mean ± sd (over images) of PSNR and SSIM for (n, H, W) images against their references."""
    images, references = np.asarray(images), np.asarray(references)
    if images.shape != references.shape or images.ndim != 3:
        raise ValueError(f"paired stacks must be (n, H, W) of one shape, got {images.shape}, {references.shape}")
    p = np.array([psnr(a, b) for a, b in zip(images, references)])
    s = np.array([ssim(a, b) for a, b in zip(images, references)])

    def sd(v: np.ndarray) -> float:
        if len(v) < 2:
            return 0.0
        return float(v.std(ddof=1)) if np.isfinite(v).all() else float("nan")  # inf PSNR: identical images

    return {"n": len(p), "psnr_mean": float(p.mean()), "psnr_sd": sd(p),
            "ssim_mean": float(s.mean()), "ssim_sd": sd(s)}


# --------------------------------------------------------------------------------------------
# Dice (FCN-score)
# --------------------------------------------------------------------------------------------
def dice_per_class(pred: np.ndarray, ref: np.ndarray,
                   classes: Sequence[int] = FOREGROUND_CLASSES) -> dict[str, float]:
    """Pooled Dice per class over all images, plus ``mean`` over the classes where it is defined.

    A class absent from both ``pred`` and ``ref`` gets NaN (not 1: no evidence either way) and is
    left out of the mean; the mean is NaN when no class is defined.
    """
    pred, ref = np.asarray(pred), np.asarray(ref)
    if pred.shape != ref.shape:
        raise ValueError(f"shape mismatch {pred.shape} vs {ref.shape}")
    n_classes = max(int(max(classes)) + 1, int(pred.max(initial=0)) + 1, int(ref.max(initial=0)) + 1)
    d = dice_from_counts(overlap_counts(pred, ref, n_classes))
    out = {str(c): float(d[c]) for c in classes}
    defined = [v for v in out.values() if np.isfinite(v)]
    out["mean"] = float(np.mean(defined)) if defined else float("nan")
    return out
