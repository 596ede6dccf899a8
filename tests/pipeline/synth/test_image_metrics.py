"""Synthesis metrics (pipeline/synth/image_metrics.py) against cases with known answers."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from pipeline.synth import image_metrics as M


# ------------------------------------------------------------------------------------- KID
def test_mmd2_unbiased_matches_the_definition_written_as_loops():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(5, 3)), rng.normal(1.0, 1.0, size=(4, 3))

    def k(a, b):
        return (a @ b / 3 + 1) ** 3

    sxx = sum(k(x[i], x[j]) for i, j in itertools.permutations(range(5), 2)) / (5 * 4)
    syy = sum(k(y[i], y[j]) for i, j in itertools.permutations(range(4), 2)) / (4 * 3)
    sxy = sum(k(a, b) for a in x for b in y) / (5 * 4)
    assert M.mmd2_unbiased(x, y) == pytest.approx(sxx + syy - 2 * sxy, rel=1e-12)


def test_kid_scale_matches_the_analytic_mmd_of_shifted_gaussians():
    # d = 1: k(x, y) = (xy + 1)^3 = x³y³ + 3x²y² + 3xy + 1, so for P = N(0,1), Q = N(mu,1):
    # MMD² = (E_P x³ - E_Q x³)² + 3 (E_P x² - E_Q x²)² + 3 (E_P x - E_Q x)²
    mu = 0.5
    analytic = (mu**3 + 3 * mu) ** 2 + 3 * (mu**2) ** 2 + 3 * mu**2
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(8000, 1)), rng.normal(mu, 1.0, size=(8000, 1))
    mean, std, m = M.kid(x, y, n_subsets=8, subset_size=2000, seed=0)
    assert m == 2000 and std > 0
    assert mean == pytest.approx(analytic, rel=0.2)  # sampling sd of the cubic-moment term is ~7 %


def test_kid_is_unbiased_around_zero_for_one_distribution_and_positive_for_two():
    rng = np.random.default_rng(2)
    same = [M.mmd2_unbiased(rng.normal(size=(40, 8)), rng.normal(size=(40, 8))) for _ in range(200)]
    shifted = M.mmd2_unbiased(rng.normal(size=(40, 8)), rng.normal(0.7, 1.0, size=(40, 8)))
    # an unbiased estimator scatters around 0 (negative values occur); a biased one would be > 0
    assert min(same) < 0 < max(same)
    assert abs(np.mean(same)) < 3 * np.std(same) / np.sqrt(len(same))
    assert shifted > 10 * np.std(same)


def test_kid_of_a_set_with_itself_is_near_zero_relative_to_a_shift():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(1000, 16))
    same, _, _ = M.kid(x, x, n_subsets=20, subset_size=500, seed=1)
    diff, _, _ = M.kid(x, x + 0.5, n_subsets=20, subset_size=500, seed=1)
    # different random subsets of one set: two samples of one distribution, O(1/m) scatter around 0
    assert diff > 0.5 and abs(same) < 0.05 * diff


def test_kid_rejects_mismatched_feature_dimensions():
    with pytest.raises(ValueError):
        M.kid(np.zeros((5, 3)), np.zeros((5, 4)))


# ------------------------------------------------------------------------------------- FD
def test_frechet_distance_of_identical_sets_is_zero_even_with_singular_covariances():
    rng = np.random.default_rng(4)
    x = np.abs(rng.normal(size=(30, 64)))  # n < d: singular covariance
    x[:, :10] = 0.0  # dead channels
    assert M.frechet_distance_features(x, x) == pytest.approx(0.0, abs=1e-6)
    assert M.frechet_distance_features(x, x + 1.0) == pytest.approx(64.0, rel=1e-4)  # ||shift||² = 64


def test_frechet_distance_analytic_for_proportional_covariances():
    rng = np.random.default_rng(5)
    a = rng.normal(size=(6, 6))
    s = a @ a.T + 0.1 * np.eye(6)
    mu1, mu2, c = rng.normal(size=6), rng.normal(size=6), 2.5
    # S2 = c S1 commutes with S1: Tr(S1 + S2 - 2 (S1 S2)^½) = (1 + c - 2 sqrt(c)) Tr S1
    expected = float(np.sum((mu1 - mu2) ** 2) + (1 + c - 2 * np.sqrt(c)) * np.trace(s))
    assert M.frechet_distance(mu1, s, mu2, c * s) == pytest.approx(expected, rel=1e-9)


def test_frechet_distance_of_shifted_gaussian_samples_equals_squared_shift():
    rng = np.random.default_rng(6)
    cov = np.diag([1.0, 2.0, 0.5, 1.5])
    shift = np.array([1.0, -2.0, 0.0, 0.5])
    x = rng.multivariate_normal(np.zeros(4), cov, size=40000)
    y = rng.multivariate_normal(shift, cov, size=40000)
    assert M.frechet_distance_features(x, y) == pytest.approx(float(shift @ shift), abs=0.05)


def test_frechet_distance_diagonal_gaussians():
    a, b = np.array([1.0, 4.0, 9.0]), np.array([4.0, 4.0, 1.0])
    mu1, mu2 = np.zeros(3), np.array([1.0, 0.0, 2.0])
    expected = 5.0 + float(np.sum((np.sqrt(a) - np.sqrt(b)) ** 2))
    assert M.frechet_distance(mu1, np.diag(a), mu2, np.diag(b)) == pytest.approx(expected, rel=1e-9)


# ------------------------------------------------------------------------------------- PSNR / SSIM
def test_psnr_ssim_identical_images():
    img = np.random.default_rng(7).uniform(size=(32, 32))
    assert M.psnr(img, img) == float("inf")
    assert M.ssim(img, img) == pytest.approx(1.0)


def test_psnr_known_value_and_clipping_to_unit_range():
    ref = np.full((16, 16), 0.5)
    assert M.psnr(ref + 0.1, ref) == pytest.approx(20.0)  # MSE 0.01, data range 1
    over = np.full((16, 16), 1.0)
    assert M.psnr(over * 1.4, over) == float("inf")  # both clip to 1
    noisy = np.clip(ref + np.random.default_rng(8).normal(0, 0.2, ref.shape), 0, 1)
    assert M.ssim(noisy, ref) < 0.9


def test_paired_similarity_summary():
    rng = np.random.default_rng(9)
    real = rng.uniform(size=(3, 24, 24))
    synth = np.clip(real + rng.normal(0, 0.05, real.shape), 0, 1)
    s = M.paired_similarity(synth, real)
    per = [M.psnr(a, b) for a, b in zip(synth, real)]
    assert s["n"] == 3 and s["psnr_mean"] == pytest.approx(np.mean(per))
    assert s["psnr_sd"] == pytest.approx(np.std(per, ddof=1))
    assert 0 < s["ssim_mean"] < 1
    with pytest.raises(ValueError):
        M.paired_similarity(synth, real[:2])


# ------------------------------------------------------------------------------------- Dice
def test_dice_per_class_edge_cases():
    ref = np.zeros((2, 8, 8), np.uint8)
    ref[0, :4] = 1
    ref[1, :2] = 2
    pred = ref.copy()
    d = M.dice_per_class(pred, ref)
    assert d["1"] == d["2"] == 1.0
    assert np.isnan(d["3"]) and np.isnan(d["4"])  # absent from both: undefined, not 1
    assert d["mean"] == 1.0  # mean over defined classes only
    pred[1] = 0  # class 2 missed entirely, class 4 false positive
    pred[0, 7, 7] = 4
    d = M.dice_per_class(pred, ref)
    assert d["2"] == 0.0 and d["4"] == 0.0 and np.isnan(d["3"])
    assert np.isnan(M.dice_per_class(np.zeros((1, 4, 4)), np.zeros((1, 4, 4)))["mean"])


def test_dice_is_pooled_over_images_not_averaged():
    ref = np.zeros((2, 10, 10), np.uint8)
    pred = np.zeros_like(ref)
    ref[0, :, :9] = 3  # 90 px, all found
    pred[0, :, :9] = 3
    ref[1, 0, 0] = 3  # 1 px, missed: per-image mean would be 0.5
    d = M.dice_per_class(pred, ref)
    assert d["3"] == pytest.approx(2 * 90 / (90 + 91))
