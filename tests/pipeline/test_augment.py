"""Augmentation: identity equals the contract's ROI crop, image/mask consistency, determinism."""

from __future__ import annotations

import numpy as np
import pytest

from models import preprocess as pp
from pipeline import augment as A

SPATIAL_ONLY = A.AugmentConfig(p_gamma=0, p_contrast=0, p_bias=0, p_noise=0, p_elastic=1.0)


def _batch(n: int = 4, size: int = 96, seed: int = 0):
    rng = np.random.default_rng(seed)
    masks = np.zeros((n, size, size), np.uint8)
    rr, cc = np.mgrid[0:size, 0:size]
    for k in range(n):
        d = np.hypot(rr - size / 2 - k, cc - size / 2 + k)
        masks[k][d < 20] = 2
        masks[k][d < 12] = 1
        masks[k][(d < 20) & (d >= 12) & (cc > size / 2 + 5)] = 3
    images = masks.astype(np.float32) * 40 + rng.normal(0, 1, masks.shape).astype(np.float32)
    return images, masks


@pytest.mark.parametrize("centre", [(48.0, 48.0), (10.2, 90.7), (-5.0, 3.0), (47.5, 47.5)])
def test_identity_warp_is_the_contract_crop(centre):
    images, masks = _batch()
    centres = np.tile(np.floor(np.asarray(centre) + 0.5), (len(images), 1))
    x, y = A.crop_batch(images, masks, centres, (64, 64))
    ref_x, _ = pp.crop_roi(images, centre, size=64)
    ref_y, _ = pp.crop_roi(masks, centre, size=64)
    np.testing.assert_array_equal(x, ref_x)
    np.testing.assert_array_equal(y, ref_y)


def test_no_augment_config_changes_nothing():
    images, masks = _batch()
    aug = A.Augmenter(A.NO_AUGMENT, seed=0)
    centres = np.full((len(images), 2), 48.0)
    x, y = aug(images, masks, centres, (96, 96))
    np.testing.assert_allclose(x, images, atol=1e-5)
    np.testing.assert_array_equal(y, masks)


def test_image_and_mask_move_together():
    images, masks = _batch()
    aug = A.Augmenter(SPATIAL_ONLY, seed=3)
    x, y = aug(images, masks, np.full((4, 2), 48.0), (96, 96))
    assert not np.array_equal(y, masks)  # something moved
    # The image encodes the label (40 per class): away from edges they must agree.
    from scipy import ndimage

    interior = ndimage.binary_erosion(y == ndimage.grey_erosion(y, size=3), iterations=1) & (
        y == ndimage.grey_dilation(y, size=3))
    agree = np.rint(x[interior] / 40.0) == y[interior]
    assert agree.mean() > 0.99
    assert set(np.unique(y)) <= {0, 1, 2, 3}  # nearest-neighbour labels: no new values


def test_seeded_and_different_seeds_differ():
    images, masks = _batch()
    c = np.full((4, 2), 48.0)
    a1 = A.Augmenter(seed=5)(images, masks, c, (64, 64))
    a2 = A.Augmenter(seed=5)(images, masks, c, (64, 64))
    b = A.Augmenter(seed=6)(images, masks, c, (64, 64))
    np.testing.assert_array_equal(a1[0], a2[0])
    np.testing.assert_array_equal(a1[1], a2[1])
    assert not np.array_equal(a1[0], b[0])


def test_anisotropic_scaling_changes_aspect_ratio():
    images, masks = _batch(n=1)
    cfg = A.AugmentConfig(p_rotate=0, p_flip=0, p_scale=0, p_anisotropy=1.0,
                          anisotropy_range=(2.0, 2.0), max_shift_px=0, p_elastic=0)
    m = A.random_matrices(np.random.default_rng(0), 1, cfg)
    coords = A.sample_coordinates(np.array([[48.0, 48.0]]), (96, 96), m)
    _, y = A.warp(images, masks, coords)
    rows = np.flatnonzero((y[0] > 0).any(axis=1))
    cols = np.flatnonzero((y[0] > 0).any(axis=0))
    # Rows sampled sqrt(2) coarser, columns sqrt(2) finer: the disc becomes a 1:2 ellipse.
    assert (np.ptp(cols) + 1) / (np.ptp(rows) + 1) == pytest.approx(2.0, rel=0.1)


def test_padding_never_truncates_near_border():
    images, masks = _batch()
    x, y = A.crop_batch(images, masks, np.array([[0.0, 0.0]] * 4), (64, 64), cval=-1.0)
    assert x.shape == (4, 64, 64)
    assert (x[:, :32, :] == -1.0).all() and (y[:, :32, :] == 0).all()
    np.testing.assert_array_equal(x[:, 32:, 32:], images[:, :32, :32])


def test_intensity_augmentation_keeps_shape_and_stays_finite():
    images, _ = _batch()
    cfg = A.AugmentConfig(p_gamma=1, p_contrast=1, p_bias=1, p_noise=1)
    out = A.augment_intensity(images, np.random.default_rng(0), cfg)
    assert out.shape == images.shape and out.dtype == np.float32
    assert np.isfinite(out).all()
    assert not np.allclose(out, images)
    same = A.augment_intensity(images, np.random.default_rng(0), A.NO_AUGMENT)
    np.testing.assert_allclose(same, images, rtol=1e-5, atol=1e-4)


def test_smooth_upsampling_exact_size():
    field = A._upsample(np.random.default_rng(0).normal(size=(2, 3, 5, 5)), (37, 41))
    assert field.shape == (2, 3, 37, 41)
