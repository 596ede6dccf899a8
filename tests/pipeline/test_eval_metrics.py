"""Metrics on hand-made arrays with answers worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from pipeline.evaluate import metrics as M


def test_dice_known_overlap_and_empty_rule():
    a = np.zeros((10, 10), bool)
    b = np.zeros((10, 10), bool)
    a[0:2, 0:5] = True  # 10 px
    b[1:3, 0:5] = True  # 10 px, 5 in common
    assert M.dice(a, b) == pytest.approx(2 * 5 / 20)
    assert M.dice(a, a) == 1.0
    empty = np.zeros((10, 10), bool)
    assert M.dice(empty, empty) == 1.0  # EMIDEC: absent in both counts as 1
    assert M.dice(empty, empty, empty=float("nan")) != M.dice(empty, empty, empty=float("nan"))
    assert M.dice(a, empty) == 0.0 and M.dice(empty, b) == 0.0
    with pytest.raises(ValueError):
        M.dice(a, np.zeros((5, 5), bool))


def test_pooled_dice_differs_from_mean_of_slices():
    # Slice 0: class 1 perfect, 100 px. Slice 1: class 1 predicted 1 px where truth has 1 other px.
    gt = np.zeros((2, 20, 20), np.uint8)
    pred = np.zeros_like(gt)
    gt[0, :10, :10] = 1
    pred[0, :10, :10] = 1
    gt[1, 15, 15] = 1
    pred[1, 0, 0] = 1
    counts = M.overlap_counts(pred[0], gt[0]) + M.overlap_counts(pred[1], gt[1])
    assert counts[1].tolist() == [100, 101, 101]
    d = M.dice_from_counts(counts)
    assert d[1] == pytest.approx(200 / 202)  # pooled, not (1 + 0) / 2
    assert math.isnan(d[3])  # absent from both: undefined when pooling
    np.testing.assert_array_equal(M.overlap_counts(pred, gt), counts)


def test_case_structure_dice_emidec_composites():
    gt = np.zeros((1, 8, 8), np.uint8)
    pred = np.zeros_like(gt)
    gt[0, 0, :4] = [2, 3, 4, 4]
    pred[0, 0, :4] = [2, 2, 3, 4]  # myo 4/4 agree; infarct(3+4): gt 3 px, pred 2 px, common 2
    d = M.case_structure_dice(pred, gt)
    assert d["myocardium"] == 1.0
    assert d["infarct"] == pytest.approx(2 * 2 / 5)
    assert d["no_reflow"] == pytest.approx(2 * 1 / 3)
    normal = np.zeros((2, 8, 8), np.uint8)
    normal[:, 2:4, 2:4] = 2
    assert M.case_structure_dice(normal, normal) == {"myocardium": 1.0, "infarct": 1.0,
                                                     "no_reflow": 1.0}
    fp = normal.copy()
    fp[0, 2, 2] = 4  # a false no-reflow pixel in a normal case
    assert M.case_structure_dice(fp, normal)["no_reflow"] == 0.0


def test_hd95_parallel_lines_with_spacing():
    a = np.zeros((20, 40), bool)
    b = np.zeros((20, 40), bool)
    a[5, 5:30] = True
    b[9, 5:30] = True  # every point 4 rows from the other line
    assert M.hd95(a, b) == pytest.approx(4.0)
    assert M.hd95(a, b, spacing=(1.5, 0.3)) == pytest.approx(6.0)  # rows are 1.5 mm apart
    assert M.hd95(a, a) == 0.0


def test_hd95_ignores_few_outliers_but_hd_would_not():
    a = np.zeros((1, 60, 400), bool)
    b = np.zeros((1, 60, 400), bool)
    a[0, 10, 0:400] = True
    b[0, 11, 0:400] = True  # 400 + 400 surface points at distance 1
    b[0, 50, 0] = True  # one stray pixel, 40 rows from line a
    d = np.concatenate([M.surface_distances_2d(a[0], b[0]), M.surface_distances_2d(b[0], a[0])])
    assert d.max() == pytest.approx(40.0)  # the plain Hausdorff distance
    assert M.hd95(a, b) == pytest.approx(1.0)


def test_hd95_pools_slices_and_skips_one_sided_slices():
    a = np.zeros((3, 20, 20), bool)
    b = np.zeros((3, 20, 20), bool)
    a[0, 5, 2:18] = True
    b[0, 7, 2:18] = True  # distance 2
    a[1, 5, 2:18] = True  # slice 1: only in a -> ignored, counted as one-sided
    assert M.hd95(a, b) == pytest.approx(2.0)
    assert M.slice_presence_mismatch(a, b) == 1
    assert math.isnan(M.hd95(np.zeros((2, 5, 5), bool), np.zeros((2, 5, 5), bool)))


def test_surface_of_filled_square_is_its_border():
    sq = np.zeros((10, 10), bool)
    sq[2:7, 2:7] = True  # 5x5 -> 16 border pixels
    assert M._surface(sq).sum() == 16
    with pytest.raises(ValueError):
        M.surface_distances_2d(sq, np.zeros_like(sq))


def test_volume_in_ml_and_pixels():
    mask = np.zeros((2, 10, 10), bool)
    mask[0, :2, :5] = True  # 10 voxels
    mask[1, 0, 0] = True  # 11
    v_ml = M.voxel_volume_ml((0.5, 2.0), 8.0)  # 0.5 * 2 * 8 = 8 mm3 = 0.008 mL
    assert v_ml == pytest.approx(0.008)
    assert M.volume(mask, v_ml) == pytest.approx(0.088)
    assert M.volume(mask) == 11.0


def test_voxel_volume_matches_volume_dataclass():
    from models.volume import Volume

    v = Volume(pixels=np.zeros((3, 4, 4)), pixel_spacing=(0.75, 0.75),
               row_direction=np.array([1.0, 0, 0]), column_direction=np.array([0, 1.0, 0]),
               positions=np.array([[0, 0, 0], [0, 0, 12.0], [0, 0, 24.0]]), slice_spacing=12.0)
    assert M.voxel_volume_ml(v.pixel_spacing, v.slice_spacing) == pytest.approx(v.voxel_volume_ml())


def test_agreement_bias_limits_and_correlation():
    ref = [10.0, 20.0, 30.0, 40.0]
    pred = [12.0, 22.0, 32.0, 42.0]  # constant +2
    a = M.agreement(pred, ref)
    assert a["bias"] == pytest.approx(2.0) and a["sd"] == pytest.approx(0.0)
    assert a["mad"] == pytest.approx(2.0) and a["pearson_r"] == pytest.approx(1.0)
    b = M.agreement([1.0, 3.0], [2.0, 2.0])  # diffs -1, +1
    assert b["bias"] == 0.0 and b["sd"] == pytest.approx(math.sqrt(2))
    assert b["loa_high"] == pytest.approx(1.96 * math.sqrt(2))
    assert math.isnan(b["pearson_r"])  # constant reference
    assert M.agreement([], [])["n"] == 0
