"""Clinical agreement (infarct % / MVO % of LV myocardium): statistics on known values, checked
against closed forms and numpy/scipy; the per-case percentages; metrics.json, metrics.md,
per_case.csv and the figure of `evaluate`, and their pooling by `cv_report`."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from pipeline.evaluate import agreement as A
from pipeline.evaluate import report


def test_ccc_of_identical_data_is_one():
    x = [3.0, 10.0, 0.0, 25.5, 7.0]
    assert A.lin_ccc(x, x) == pytest.approx(1.0)
    assert A.ccc_ci(x, x) == (pytest.approx(1.0), pytest.approx(1.0))
    s = A.agreement_stats(x, x)
    assert s["bias"] == 0.0 and s["sd"] == 0.0 and s["loa_low"] == s["loa_high"] == 0.0
    assert s["pearson_r"] == pytest.approx(1.0) and s["n"] == 5


def test_ccc_of_a_constant_shift_matches_the_closed_form():
    x = np.array([2.0, 5.0, 9.0, 14.0, 20.0, 31.0])
    c = 4.0
    s2 = x.var()  # population variance, as in Lin's estimator
    expected = 2 * s2 / (2 * s2 + c * c)
    assert A.lin_ccc(x + c, x) == pytest.approx(expected, rel=1e-12)
    assert A.lin_ccc(x + c, x) < 1.0 and A.lin_ccc(x - c, x) == pytest.approx(expected)
    # A pure scale change: y = a x -> 2 a s2 / (s2 + a^2 s2 + ((a - 1) mean)^2).
    a = 1.5
    assert A.lin_ccc(a * x, x) == pytest.approx(
        2 * a * s2 / (s2 + a * a * s2 + ((a - 1) * x.mean()) ** 2))
    st = A.agreement_stats(x + c, x)
    assert st["bias"] == pytest.approx(c) and st["sd"] == pytest.approx(0.0, abs=1e-12)
    assert st["pearson_r"] == pytest.approx(1.0)


def test_statistics_match_numpy_and_scipy():
    rng = np.random.default_rng(3)
    truth = rng.uniform(0, 40, 25)
    pred = 0.8 * truth + 3 + rng.normal(0, 4, 25)
    s = A.agreement_stats(pred, truth)
    cov = np.cov(truth, pred, ddof=0)[0, 1]
    ccc = 2 * cov / (truth.var() + pred.var() + (truth.mean() - pred.mean()) ** 2)
    assert s["ccc"] == pytest.approx(ccc, rel=1e-12)
    assert s["pearson_r"] == pytest.approx(stats.pearsonr(pred, truth)[0], rel=1e-12)
    d = pred - truth
    assert s["bias"] == pytest.approx(d.mean()) and s["sd"] == pytest.approx(d.std(ddof=1))
    assert s["loa_low"] == pytest.approx(d.mean() - 1.96 * d.std(ddof=1))
    assert s["loa_high"] == pytest.approx(d.mean() + 1.96 * d.std(ddof=1))
    assert s["mean_truth"] == pytest.approx(truth.mean()) and s["n"] == 25
    assert s["ccc"] < s["pearson_r"]  # CCC = r x bias correction, which is < 1 here
    assert s["ccc_ci_low"] < s["ccc"] < s["ccc_ci_high"] < 1.0
    # Same means and variances: the bias correction is 1, so CCC equals Pearson r.
    y = rng.normal(size=40)
    x = 0.6 * y + 0.8 * rng.normal(size=40)
    x = (x - x.mean()) / x.std() * y.std() + y.mean()
    assert A.lin_ccc(x, y) == pytest.approx(stats.pearsonr(x, y)[0], rel=1e-10)


def test_ccc_ci_covers_the_population_value():
    # y = 0.9 x + 2 + e, x ~ N(10, 4^2), e ~ N(0, 2^2): population CCC = 2 * 14.4 / (16 + 16.96 + 1).
    true_ccc = 28.8 / 33.96
    rng = np.random.default_rng(11)
    hits, reps, n = 0, 800, 40
    widths = []
    for _ in range(reps):
        x = rng.normal(10, 4, n)
        y = 0.9 * x + 2 + rng.normal(0, 2, n)
        lo, hi = A.ccc_ci(y, x)
        hits += lo <= true_ccc <= hi
        widths.append(hi - lo)
    assert 0.92 <= hits / reps <= 0.975  # a 95 % interval
    assert 0.05 < float(np.median(widths)) < 0.3


def test_undefined_cases_give_nan_not_errors():
    assert math.isnan(A.lin_ccc([1.0], [2.0]))
    assert all(math.isnan(v) for v in A.ccc_ci([1.0, 2.0, 3.0], [1.0, 2.5, 2.0]))  # n < 4
    s = A.agreement_stats([0.0, 0.0, 0.0, 0.0], [1.0, 2.0, 3.0, 4.0])  # constant prediction
    assert s["ccc"] == pytest.approx(0.0) and math.isnan(s["pearson_r"])
    assert math.isnan(s["ccc_ci_low"])
    assert A.agreement_stats([], [])["n"] == 0
    with pytest.raises(ValueError):
        A.lin_ccc([1.0, 2.0], [1.0])


def _case(myo_rows: slice = slice(2, 4), infarct_px: int = 0, mvo_px: int = 0) -> np.ndarray:
    """Two slices, LV cavity 4x4, myocardium 2 rows x 12 columns (48 px); ``infarct_px`` of
    them (slice 0, row 2) infarct, the first ``mvo_px`` of those MVO."""
    lab = np.zeros((2, 16, 16), np.uint8)
    lab[:, 6:10, 6:10] = 1
    lab[:, myo_rows, 2:14] = 2
    lab[0, 2, 2:2 + infarct_px] = 3
    lab[0, 2, 2:2 + mvo_px] = 4
    return lab


def test_percent_of_lv_myocardium_per_case():
    gt = _case(infarct_px=6, mvo_px=2)
    pred = _case(infarct_px=12, mvo_px=0)
    rec = report.score_case("c", pred, gt, (1.0, 1.0), voxel_volume=0.37)  # unit-free ratios
    assert rec["percent"]["infarct_percent"]["gt"] == pytest.approx(100 * 6 / 48)
    assert rec["percent"]["infarct_percent"]["pred"] == pytest.approx(100 * 12 / 48)
    assert rec["percent"]["mvo_percent"]["gt"] == pytest.approx(100 * 2 / 48)
    assert rec["percent"]["mvo_percent"]["pred"] == 0.0
    # Same as models.measurements reports to the user for the same labels.
    from models.measurements import compute_measurements
    from models.volume import Volume

    v = Volume(pixels=np.zeros(gt.shape), pixel_spacing=(1.0, 1.0),
               row_direction=np.array([1.0, 0, 0]), column_direction=np.array([0, 1.0, 0]),
               positions=np.array([[0, 0, 0], [0, 0, 5.0]]), slice_spacing=5.0)
    m = compute_measurements(gt, v)
    assert rec["percent"]["infarct_percent"]["gt"] == pytest.approx(m.infarct_percent_of_myocardium)
    assert rec["percent"]["mvo_percent"]["gt"] == pytest.approx(m.mvo_percent_of_myocardium)
    # No myocardium predicted (a missed heart): 0 %, as the node would report.
    empty = report.score_case("e", np.zeros_like(gt), gt, (1.0, 1.0), 1.0)
    assert empty["percent"]["infarct_percent"]["pred"] == 0.0
    myops = report.score_case("m", pred, _case(infarct_px=6), (1.0, 1.0), 1.0,
                              merge_mvo_into_infarct=True)
    assert myops["percent"]["mvo_percent"] == {"gt": None, "pred": None}


def _records(n: int = 8, seed: int = 0, prefix: str = "Case_P", no_mvo: bool = False
             ) -> list[dict[str, object]]:
    rng = np.random.default_rng(seed)
    recs = []
    for i in range(n):
        g_inf, g_mvo = int(rng.integers(0, 12)), 0
        if not no_mvo:
            g_mvo = int(rng.integers(0, g_inf + 1))
        p_inf = int(np.clip(g_inf + rng.integers(-3, 4), 0, 12))
        p_mvo = int(rng.integers(0, p_inf + 1))
        gt = _case(infarct_px=g_inf, mvo_px=g_mvo)
        pred = _case(infarct_px=p_inf, mvo_px=p_mvo)
        recs.append(report.score_case(f"{prefix}{i:03d}", pred, gt, (1.0, 1.0), 1.0,
                                      merge_mvo_into_infarct=no_mvo))
    return recs


def _pairs(recs: list[dict[str, object]], name: str) -> tuple[list[float], list[float]]:
    return ([r["percent"][name]["pred"] for r in recs], [r["percent"][name]["gt"] for r in recs])


def test_report_files_carry_the_agreement(tmp_path: Path):
    recs = _records()
    s = report.aggregate(recs, {"distance": "px", "volume": "px"})
    report.write_reports(tmp_path, s, recs, {"format": "emidec-png", "weights": "w",
                                             "model_name": "m", "model_version": "1",
                                             "postprocess": True})
    doc = json.loads((tmp_path / "metrics.json").read_text())
    ca = doc["summary"]["clinical_agreement"]
    assert ca["figure"] == "agreement.png" and ca["unit"] == "% of LV myocardium"
    for name in ("infarct_percent", "mvo_percent"):
        ref = A.agreement_stats(*_pairs(recs, name))
        for k in ("n", "ccc", "ccc_ci_low", "ccc_ci_high", "pearson_r", "bias", "sd", "loa_low",
                  "loa_high"):
            assert ca[name][k] == pytest.approx(ref[k]), (name, k)
    assert doc["cases"][0]["percent"]["infarct_percent"]["gt"] == recs[0]["percent"][
        "infarct_percent"]["gt"]
    md = (tmp_path / "metrics.md").read_text()
    assert md.index("## Clinical agreement") < md.index("## (a) Dice")  # beside the Dice tables
    inf = ca["infarct_percent"]
    assert (f"| infarct % of LV myocardium | 8 | {inf['mean_truth']:.2f} | {inf['mean_pred']:.2f} "
            f"| {inf['ccc']:.3f} ({inf['ccc_ci_low']:.3f} to {inf['ccc_ci_high']:.3f}) |") in md
    assert "](agreement.png)" in md and "MVO % of LV myocardium | 8 |" in md
    with (tmp_path / "per_case.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [float(r["infarct_pct_gt"]) for r in rows] == pytest.approx(
        _pairs(recs, "infarct_percent")[1], abs=0.005)
    assert [float(r["mvo_pct_pred"]) for r in rows] == pytest.approx(
        _pairs(recs, "mvo_percent")[0], abs=0.005)
    from PIL import Image

    with Image.open(tmp_path / "agreement.png") as im:
        assert im.format == "PNG" and im.width > 800 and im.height > 800  # 2 measures x 2 panels


def test_myops_reports_infarct_only(tmp_path: Path):
    recs = _records(6, seed=1, prefix="Case30", no_mvo=True)
    s = report.aggregate(recs, {"distance": "mm", "volume": "mL"}, no_mvo_class=True)
    ca = s["clinical_agreement"]
    assert ca["infarct_percent"]["n"] == 6 and ca["mvo_percent"]["n"] == 0
    assert "not labelled" in ca["mvo_percent"]["note"]
    report.write_reports(tmp_path, s, recs, {"format": "myops-nifti", "no_mvo_class": True})
    md = (tmp_path / "metrics.md").read_text()
    assert "| MVO % of LV myocardium | 0 | not labelled" in md
    rows = list(csv.DictReader((tmp_path / "per_case.csv").open()))
    assert {r["mvo_pct_gt"] for r in rows} == {"n/a"}
    from PIL import Image

    with Image.open(tmp_path / "agreement.png") as im:  # one row: infarct only
        assert im.height < im.width


def _fold_dir(tmp_path: Path, k: int, recs: list[dict[str, object]], old: bool = False) -> Path:
    d = tmp_path / f"fold{k}"
    for r in recs:
        r["localised_by"] = "network"
    s = report.aggregate(recs, {"distance": "px", "volume": "px"})
    report.write_reports(d, s, recs, {"format": "emidec-png", "weights": f"w{k}", "runtime": "onnx",
                                      "fold": k, "postprocess": True})
    if old:  # an evaluation written before the agreement existed: no percentages, no block
        doc = json.loads((d / "metrics.json").read_text())
        del doc["summary"]["clinical_agreement"]
        for r in doc["cases"]:
            del r["percent"]
        (d / "metrics.json").write_text(json.dumps(doc))
    return d


def test_cv_report_pools_agreement_over_folds(tmp_path: Path):
    from pipeline.evaluate.run import cv_report

    a, b = _records(6, seed=2, prefix="Case_A"), _records(7, seed=3, prefix="Case_B")
    dirs = [_fold_dir(tmp_path, 0, a), _fold_dir(tmp_path, 1, b, old=True)]
    s = cv_report(dirs, tmp_path / "cv")
    pooled = a + b
    for name in ("infarct_percent", "mvo_percent"):
        ref = A.agreement_stats(*_pairs(pooled, name))
        assert s["clinical_agreement"][name]["n"] == 13
        assert s["clinical_agreement"][name]["ccc"] == pytest.approx(ref["ccc"])
        assert s["clinical_agreement"][name]["bias"] == pytest.approx(ref["bias"])
    md = (tmp_path / "cv" / "metrics.md").read_text()
    f0 = A.lin_ccc(*_pairs(a, "infarct_percent"))
    assert "infarct % CCC |" in md
    assert any(line.startswith("| 0 | 6 |") and line.endswith(f" | {f0:.3f} |")
               for line in md.splitlines())
    assert any(line.startswith("| 1 | 7 |") and line.endswith(" | n/a |")
               for line in md.splitlines())
    assert (tmp_path / "cv" / "agreement.png").is_file()
