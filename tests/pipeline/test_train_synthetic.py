"""Synthetic pairs mixed into segmenter batches (pipeline.train.synthetic + SegmenterBatches)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pipeline.augment import NO_AUGMENT, AugmentConfig
from pipeline.datasets.emidec import EmidecCase
from pipeline.train.synthetic import SyntheticDataError, SyntheticPool, n_synthetic, \
    resolve_pairs_path


def _pairs(path: Path, n: int = 6, size: int = 128, label_offset: int = 0) -> Path:
    rng = np.random.default_rng(n)
    masks = np.zeros((n, size, size), np.uint8)
    masks[:, 40:90, 40:90] = 2
    masks[:, 55:75, 55:75] = 1
    masks[:, 40:50, 40:90] = 3 + label_offset
    images = rng.random((n, size, size)).astype(np.float32)
    images[masks == 3] = 1.0  # bright infarct: the image follows its mask
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, images=images, masks=masks)
    return path


def test_pool_loads_files_and_folders(tmp_path):
    a = _pairs(tmp_path / "a" / "pairs.npz", 4)
    b = _pairs(tmp_path / "b" / "masks.npz", 3)  # `simulate --render` output
    assert resolve_pairs_path(tmp_path / "b") == b
    pool = SyntheticPool.load([a, tmp_path / "b"])
    assert len(pool) == 7 and pool.counts == [4, 3]
    d = pool.describe()
    assert d["total"] == 7 and abs(sum(d["label_fraction"]) - 1) < 1e-9


@pytest.mark.parametrize("bad", ["missing", "shape", "labels", "nan", "keys"])
def test_pool_rejects_broken_sets(tmp_path, bad):
    p = tmp_path / "pairs.npz"
    if bad != "missing":
        x = np.zeros((2, 128, 128), np.float32)
        y = np.zeros((2, 128, 128), np.uint8)
        if bad == "shape":
            x = np.zeros((2, 64, 64), np.float32)
        if bad == "labels":
            y[0, 0, 0] = 7
        if bad == "nan":
            x[0, 0, 0] = np.nan
        np.savez(p, **({"images": x, "masks": y} if bad != "keys" else {"x": x, "y": y}))
    with pytest.raises(SyntheticDataError):
        SyntheticPool.load([p])


def test_draw_keeps_image_and_mask_aligned(tmp_path):
    pool = SyntheticPool.load([_pairs(tmp_path / "pairs.npz")])
    cfg = AugmentConfig(p_gamma=0, p_contrast=0, p_bias=0, p_noise=0)
    x, y = pool.draw(np.random.default_rng(0), 5, cfg)
    assert x.shape == y.shape == (5, 128, 128) and x.dtype == np.float32
    assert set(np.unique(y)) <= {0, 1, 2, 3}
    # After rotation/scale/elastic the bright pixels still sit on the infarct label.
    assert x[y == 3].mean() > x[y == 0].mean() + 0.3
    x0, y0 = pool.draw(np.random.default_rng(0), 0, cfg)
    assert x0.shape == (0, 128, 128)


def test_n_synthetic_keeps_a_real_slice():
    assert n_synthetic(16, 0.25) == 4
    assert n_synthetic(4, 0.9) == 3
    assert n_synthetic(8, 0.0) == 0
    with pytest.raises(ValueError):
        n_synthetic(8, 1.0)


def _case(cid: str, seed: int) -> EmidecCase:
    rng = np.random.default_rng(seed)
    masks = np.zeros((3, 160, 160), np.uint8)
    masks[:, 50:110, 50:110] = 2
    masks[:, 65:95, 65:95] = 1
    images = (rng.random((3, 160, 160)) * 100 + masks * 40).astype(np.float32)
    return EmidecCase(case_id=cid, images=images, masks=masks, slice_names=[])


def test_batches_mix_synthetic_without_changing_the_real_part(tmp_path):
    from pipeline.train.data import SegmenterBatches, prepare_case

    cases = [prepare_case(_case(f"Case_N00{i}", i)) for i in range(3)]
    pool = SyntheticPool.load([_pairs(tmp_path / "pairs.npz")])
    plain = SegmenterBatches(cases, 8, 2, NO_AUGMENT, seed=3)
    mixed = SegmenterBatches(cases, 8, 2, NO_AUGMENT, seed=3, synthetic=pool,
                             synthetic_fraction=0.25)
    xp, yp = plain[0]
    xm, ym = mixed[0]
    assert xm.shape == xp.shape == (8, 128, 128, 1) and mixed.n_synthetic == 2
    # Synthetic slices carry label 3, which no real case here has.
    assert not (yp == 3).any() and (ym[-2:] == 3).any() and not (ym[:-2] == 3).any()
    # Real slices first, identical to the same batch without synthetic data (the synthetic
    # draw uses its own random stream): 2 cases x 3 slices fill the real quota of 6.
    np.testing.assert_array_equal(ym[:6], yp[:6])
    np.testing.assert_array_equal(xm[:6], xp[:6])
