"""Losses, metrics and training batches (needs Keras)."""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.tf
keras = pytest.importorskip("keras")


def _onehot(y: np.ndarray, eps: float = 1e-3) -> np.ndarray:
    p = np.eye(5, dtype=np.float32)[y] * (1 - 5 * eps) + eps
    return p


def test_ce_dice_loss_orders_predictions():
    from pipeline.train.losses import WeightedCEDiceLoss

    rng = np.random.default_rng(0)
    y = rng.integers(0, 5, (2, 16, 16))
    loss = WeightedCEDiceLoss([1, 2, 3, 4, 5])
    perfect = float(loss(y, _onehot(y)))
    uniform = float(loss(y, np.full((2, 16, 16, 5), 0.2, np.float32)))
    wrong = float(loss(y, _onehot((y + 1) % 5)))
    assert np.isfinite([perfect, uniform, wrong]).all()
    assert perfect < 0.05 < uniform < wrong
    # Class weights scale the cross-entropy: uniform prediction -> mean weight * ln 5 + Dice part.
    ce_only = WeightedCEDiceLoss([2.0] * 5, dice_weight=0.0)
    assert float(ce_only(y, np.full((2, 16, 16, 5), 0.2, np.float32))) == pytest.approx(
        2 * np.log(5), rel=1e-4)


def test_ce_dice_loss_config_round_trip():
    from pipeline.train.losses import WeightedCEDiceLoss

    l1 = WeightedCEDiceLoss([1, 2, 3, 4, 5], dice_weight=0.5)
    l2 = WeightedCEDiceLoss.from_config(l1.get_config())
    assert l2.class_weights == l1.class_weights and l2.dice_weight == 0.5


def test_pooled_dice_metric_matches_numpy_definition():
    from pipeline.evaluate.metrics import dice_from_counts, overlap_counts
    from pipeline.train.losses import PooledDice

    rng = np.random.default_rng(1)
    y = rng.integers(0, 5, (3, 8, 8))
    pred = np.where(rng.random(y.shape) < 0.7, y, rng.integers(0, 5, y.shape))
    m = PooledDice((1, 2, 3, 4))
    m.update_state(y[:2], _onehot(pred[:2]))
    m.update_state(y[2:], _onehot(pred[2:]))  # accumulates over batches
    expected = dice_from_counts(overlap_counts(pred, y))[1:].mean()
    assert float(m.result()) == pytest.approx(expected, rel=1e-5)
    m.reset_state()
    m4 = PooledDice((4,))
    m4.update_state(np.zeros((1, 4, 4)), _onehot(np.zeros((1, 4, 4), int)))
    assert float(m4.result()) == 1.0  # absent in both


def test_bce_dice_and_binary_metric():
    from pipeline.train.losses import BCEDiceLoss, BinaryPooledDice

    t = np.zeros((2, 8, 8, 1), np.float32)
    t[:, 2:6, 2:6] = 1
    loss = BCEDiceLoss()
    assert float(loss(t, t * 0.98 + 0.01)) < float(loss(t, np.full_like(t, 0.5)))
    m = BinaryPooledDice()
    m.update_state(t, t * 0.9)
    assert float(m.result()) == 1.0


def test_class_weights_from_frequencies():
    from pipeline.train.data import class_weights_from_frequencies

    f = np.array([0.9, 0.05, 0.04, 0.009, 0.001])
    w = class_weights_from_frequencies(f, max_ratio=20)
    assert (np.diff(w) >= 0).all()  # rarer -> heavier
    assert float((w * f).sum()) == pytest.approx(1.0)
    assert w.max() / w.min() == pytest.approx(20.0)  # capped


def test_batches_follow_the_contract_and_are_reproducible(synthetic_data):
    from models import preprocess as pp
    from pipeline.augment import AugmentConfig
    from pipeline.datasets import emidec
    from pipeline.train import data as D

    cases = [D.prepare_case(c) for c in emidec.load_cases(None, synthetic_data)]
    # Without augmentation the segmenter ROI is exactly the contract's training/inference crop.
    x0, y0 = D.roi_stack(cases[3], None, AugmentConfig())
    ref_x, ref_y, _ = pp.preprocess_training_stack(cases[3].images, cases[3].masks)
    np.testing.assert_allclose(x0, ref_x[..., 0], atol=1e-6)
    np.testing.assert_array_equal(y0, ref_y)

    ds = D.SegmenterBatches(cases, batch_size=6, steps_per_epoch=3, cfg=AugmentConfig(), seed=4)
    x, y = ds[1]
    assert x.shape == (6, pp.ROI_SIZE, pp.ROI_SIZE, 1) and x.dtype == np.float32
    assert y.shape == (6, pp.ROI_SIZE, pp.ROI_SIZE) and y.max() <= 4
    np.testing.assert_array_equal(x, ds[1][0])  # same (seed, epoch, index) -> same batch
    assert not np.array_equal(x, ds[2][0])
    ds.on_epoch_end()
    assert not np.array_equal(x, ds[1][0])  # a new epoch draws new batches

    loc = D.LocaliserBatches(cases, batch_size=4, steps_per_epoch=2, cfg=D.LOCALISER_AUGMENT)
    lx, ly = loc[0]
    assert lx.shape == ly.shape == (4, pp.LOCALISER_SIZE, pp.LOCALISER_SIZE, 1)
    assert 0.0 <= ly.min() and ly.max() <= 1.0 and ly.max() > 0.5
    vx, vy = D.segmenter_validation(cases[:2])
    assert len(vx) == len(vy) == sum(c.images.shape[0] for c in cases[:2])


def test_ambiguous_lesion_supervises_infarct_plus_mvo():
    """A MyoPS scar pixel ("infarct or MVO") is satisfied by either class, not by another."""
    from pipeline.train.losses import AMBIGUOUS_LESION, WeightedCEDiceLoss

    y = np.zeros((1, 8, 8), np.int64)
    y[0, 2:6, 2:6] = AMBIGUOUS_LESION
    loss = WeightedCEDiceLoss([1.0] * 5)
    as_infarct = np.where(y == AMBIGUOUS_LESION, 3, y)
    as_mvo = np.where(y == AMBIGUOUS_LESION, 4, y)
    half = _onehot(as_infarct) * 0.5 + _onehot(as_mvo) * 0.5
    as_myo = np.where(y == AMBIGUOUS_LESION, 2, y)
    l3, l4, lh, l2 = (float(loss(y, p)) for p in
                      (_onehot(as_infarct), _onehot(as_mvo), half, _onehot(as_myo)))
    assert np.isfinite([l3, l4, lh, l2]).all()
    # either lesion class (or a split between them) costs about the same, myocardium much more
    assert abs(l3 - l4) < 0.05 and abs(l3 - lh) < 0.05
    assert l2 > l3 + 0.5


def test_pooled_dice_counts_ambiguous_as_either_lesion():
    from pipeline.train.losses import AMBIGUOUS_LESION, PooledDice

    y = np.zeros((1, 8, 8), np.int64)
    y[0, 2:6, 2:6] = AMBIGUOUS_LESION
    m = PooledDice((3, 4), name="d")
    m.update_state(y, _onehot(np.where(y == AMBIGUOUS_LESION, 4, y)))
    assert float(m.result()) == pytest.approx(1.0)  # MVO predicted, absent infarct counts 1
    m3 = PooledDice((3,), name="d3")
    m3.update_state(y, _onehot(np.where(y == AMBIGUOUS_LESION, 2, y)))
    assert float(m3.result()) == pytest.approx(0.0)


def test_poly_learning_rate():
    from pipeline.train.loop import poly_learning_rate

    f = poly_learning_rate(1e-3, 10)
    assert f(0) == pytest.approx(1e-3)
    assert f(5) == pytest.approx(1e-3 * 0.5 ** 0.9)
    assert f(10) == 0.0 and f(9) > 0.0
    assert all(f(e) > f(e + 1) for e in range(9))


def test_emidec_on_canvas_keeps_labels_and_moves_lv():
    from models import preprocess as pp
    from pipeline.train.data import on_canvas

    rng = np.random.default_rng(3)
    x = rng.random((2, 64, 64)).astype(np.float32)
    m = np.zeros((2, 64, 64), np.uint8)
    m[:, 28:36, 28:36] = 1
    m[:, 30:34, 30:34] = 3
    centres = []
    for seed in range(6):
        cx, cm = on_canvas(x, m, np.random.default_rng(seed))
        assert cx.shape == cm.shape and cx.shape[1] > 64 and cx.dtype == np.float32
        assert np.bincount(cm.ravel(), minlength=4)[1:].tolist() == \
            np.bincount(m.ravel(), minlength=4)[1:].tolist()
        # the image still shows the slice under its labels (pixel-aligned)
        r, c = (int(v) for v in np.argwhere(cm[0] == 3).min(0))
        assert np.allclose(cx[0, r:r + 4, c:c + 4], x[0, 30:34, 30:34])
        rc = pp.lv_centre_from_mask(cm)
        centres.append((rc[0] / cm.shape[1], rc[1] / cm.shape[2]))
    assert np.ptp(np.array(centres), axis=0).min() > 0.05  # the LV is not always central
