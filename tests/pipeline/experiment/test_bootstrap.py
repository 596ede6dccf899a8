"""Paired case bootstrap of pooled Dice differences."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.evaluate.metrics import overlap_counts
from pipeline.experiment.bootstrap import per_case_deltas, pooled_class_deltas, pooled_dice


def _counts(rng: np.random.Generator, n_cases: int, flip: float) -> np.ndarray:
    """Per-case overlap counts of a prediction that mislabels a share ``flip`` of class pixels."""
    out = []
    for _ in range(n_cases):
        gt = rng.integers(0, 5, size=(4, 32, 32))
        pred = gt.copy()
        wrong = rng.random(gt.shape) < flip
        pred[wrong] = 0
        out.append(overlap_counts(pred, gt))
    return np.stack(out)


def test_pooled_dice_matches_summed_counts():
    rng = np.random.default_rng(0)
    c = _counts(rng, 5, 0.2)
    total = c.sum(axis=0).astype(float)
    expect = 2 * total[:, 0] / (total[:, 1] + total[:, 2])
    np.testing.assert_allclose(pooled_dice(c), expect)
    # Batched resamples: (n_boot, n_cases, 5, 3) -> (n_boot, 5)
    assert pooled_dice(np.stack([c, c])).shape == (2, 5)


def test_clearly_better_arm_has_interval_above_zero():
    rng = np.random.default_rng(1)
    base, better = _counts(rng, 12, 0.4), _counts(rng, 12, 0.1)
    res = pooled_class_deltas(base, better, n_boot=500, seed=0)
    for k in ("lv_cavity", "myocardium_normal", "infarct", "no_reflow", "mean"):
        assert res[k].delta > 0 and res[k].lo > 0 and res[k].lo <= res[k].delta <= res[k].hi
        assert res[k].p_not_better == 0.0


def test_same_arm_gives_zero_and_equal_noise_straddles_zero():
    rng = np.random.default_rng(2)
    base = _counts(rng, 15, 0.3)
    same = pooled_class_deltas(base, base, n_boot=200, seed=0)
    assert all(v.delta == 0 and v.lo == 0 and v.hi == 0 for v in same.values())
    other = _counts(rng, 15, 0.3)  # same quality, different errors
    res = pooled_class_deltas(base, other, n_boot=1000, seed=0)
    assert res["mean"].lo < 0 < res["mean"].hi


def test_bootstrap_is_deterministic_and_checks_shapes():
    rng = np.random.default_rng(3)
    a, b = _counts(rng, 6, 0.3), _counts(rng, 6, 0.2)
    assert pooled_class_deltas(a, b, 300, 7) == pooled_class_deltas(a, b, 300, 7)
    with pytest.raises(ValueError):
        pooled_class_deltas(a, b[:5])
    with pytest.raises(ValueError):
        pooled_class_deltas(a[:1], b[:1])


def test_per_case_deltas_skip_undefined_cases():
    base = [0.5, None, 0.6, 0.7, 0.4]
    arm = [0.6, 0.9, 0.7, None, 0.5]
    res = per_case_deltas(base, arm, n_boot=300, seed=0)
    assert res.delta == pytest.approx(0.1)  # cases 0, 2, 4 only
    assert res.lo == pytest.approx(0.1) and res.hi == pytest.approx(0.1)
    assert np.isnan(per_case_deltas([None, 0.1], [0.2, None]).delta)
