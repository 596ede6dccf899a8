"""Per-case scoring and aggregation on hand-made label volumes; report files."""

from __future__ import annotations

import json

import numpy as np
import pytest

from pipeline.evaluate import report


def _case(myo_rows: slice, infarct: bool = False, mvo: bool = False) -> np.ndarray:
    lab = np.zeros((2, 16, 16), np.uint8)
    lab[:, 6:10, 6:10] = 1
    lab[:, myo_rows, 2:14] = 2
    if infarct:
        lab[0, 2, 2:8] = 3
    if mvo:
        lab[0, 2, 4:6] = 4
    return lab


def test_score_case_numbers():
    gt = _case(slice(2, 4), infarct=True, mvo=True)
    pred = gt.copy()
    pred[0, 2, 4:6] = 3  # MVO missed (called infarct)
    rec = report.score_case("c1", pred, gt, spacing=(1.0, 1.0), voxel_volume=0.5)
    assert rec["dice"]["myocardium"] == 1.0
    assert rec["dice"]["infarct"] == 1.0  # 3+4 identical
    assert rec["dice"]["no_reflow"] == 0.0
    assert rec["present"] == {"myocardium": True, "infarct": True, "no_reflow": True}
    assert rec["hd95_myocardium"] == 0.0
    assert rec["volume_gt"]["no_reflow"] == pytest.approx(2 * 0.5)
    assert rec["volume_pred"]["no_reflow"] == 0.0
    assert rec["volume_gt"]["myocardium"] == pytest.approx((2 * 12 * 2) * 0.5)
    with pytest.raises(ValueError):
        report.score_case("bad", pred[:1], gt, (1.0, 1.0), 1.0)


def test_merge_mvo_for_data_without_mvo_class():
    gt = _case(slice(2, 4), infarct=True)  # MyoPS-like: scar only
    pred = gt.copy()
    pred[0, 2, 4:6] = 4  # predicted MVO inside the scar
    plain = report.score_case("c", pred, gt, (1.0, 1.0), 1.0)
    merged = report.score_case("c", pred, gt, (1.0, 1.0), 1.0, merge_mvo_into_infarct=True)
    assert np.asarray(plain["counts"])[3, 0] == 4 and np.asarray(merged["counts"])[3, 0] == 6
    assert merged["dice"]["no_reflow"] is None and merged["dice"]["infarct"] == 1.0
    s = report.aggregate([merged], {"distance": "mm", "volume": "mL"}, no_mvo_class=True)
    assert s["per_case_dice"]["no_reflow"]["all_cases"]["n"] == 0
    assert s["pooled_class_dice"]["infarct"] == 1.0
    assert s["pooled_class_dice"]["no_reflow"] is None
    assert "no_reflow" not in s["volume_agreement"]


def test_aggregate_pooled_vs_per_case():
    gt_a = _case(slice(2, 4), infarct=True)
    pred_a = gt_a.copy()
    gt_b = _case(slice(2, 4))  # normal case
    pred_b = gt_b.copy()
    pred_b[1, 12, 2:14] = 3  # 12 false infarct pixels
    recs = [report.score_case("a", pred_a, gt_a, (1.0, 1.0), 1.0),
            report.score_case("b", pred_b, gt_b, (1.0, 1.0), 1.0)]
    s = report.aggregate(recs, {"distance": "px", "volume": "px"})
    # Infarct pooled: 6 common px, |pred| = 6 + 12, |gt| = 6 -> 12 / 24.
    assert s["pooled_class_dice"]["infarct"] == pytest.approx(0.5)
    assert s["pooled_class_dice"]["no_reflow"] is None  # absent everywhere
    assert s["pooled_classes_in_mean"] == ["lv_cavity", "myocardium_normal", "infarct"]
    pc = s["per_case_dice"]["infarct"]
    assert pc["all_cases"]["mean"] == pytest.approx((1.0 + 0.0) / 2)
    assert pc["cases_with_structure"]["n"] == 1 and pc["cases_with_structure"]["mean"] == 1.0
    assert s["per_case_dice"]["no_reflow"]["all_cases"]["mean"] == 1.0  # absent in both
    assert [r["case"] for r in report.worst_cases(recs, 1)] == ["b"]
    assert s["volume_agreement"]["infarct"]["bias"] == pytest.approx(6.0)


def test_write_reports_and_overlay(tmp_path):
    gt = _case(slice(2, 4), infarct=True, mvo=True)
    rec = report.score_case("Case_X", gt, gt, (1.0, 1.0), 1.0)
    s = report.aggregate([rec], {"distance": "px", "volume": "px"})
    jp, mp = report.write_reports(tmp_path, s, [rec], {"format": "emidec-png", "weights": "w",
                                                       "postprocess": True})
    doc = json.loads(jp.read_text())
    assert doc["summary"]["pooled_class_dice_mean"] == 1.0
    assert doc["cases"][0]["case"] == "Case_X"
    md = mp.read_text()
    assert "pooled over all slices" in md and "Case_X" in md
    assert (tmp_path / "per_case.csv").read_text().startswith("case,n_slices")
    png = report.overlay_case(tmp_path / "worst" / "Case_X.png", gt.astype(np.float32) * 50, gt,
                              gt, "Case_X")
    from PIL import Image

    with Image.open(png) as im:
        assert im.width >= 3 * 16 and im.mode == "RGB"
