"""`lgenode pipeline ensemble`: fold runs -> one ensemble weights folder."""

from __future__ import annotations

import json

from typer.testing import CliRunner


def _fold(run, k, onnx=True):
    d = run / f"fold{k}"
    d.mkdir(parents=True)
    for name in ("segmenter.keras", "localiser.keras", "localiser.onnx") + (
            ("segmenter.onnx",) if onnx else ()):
        (d / name).write_bytes(f"{name}-{k}".encode())
    (d / "model.json").write_text(json.dumps({"roi_size": 128, "target_spacing_mm": 1.25,
                                              "n_classes": 5, "training": {"data": "x"}}))
    (d / "checkpoints").mkdir()
    (d / "checkpoints" / "segmenter_last.keras").write_bytes(b"big")


def test_ensemble_folder_and_threshold_from_cv(tmp_path):
    from pipeline.cli import app

    run = tmp_path / "cv"
    for k in range(3):
        _fold(run, k)
    cv_eval = tmp_path / "eval"
    cv_eval.mkdir()
    (cv_eval / "metrics.json").write_text(json.dumps(
        {"summary": {"quality_flag": {"best_threshold": 0.83}}}))
    out = tmp_path / "weights"
    res = CliRunner().invoke(app, ["ensemble", str(run), "--out", str(out), "--version", "9.9.9",
                                   "--cv-eval", str(cv_eval), "--no-calibrate"])
    assert res.exit_code == 0, res.output
    doc = json.loads((out / "model.json").read_text())
    assert doc["members"] == ["fold0", "fold1", "fold2"] and doc["version"] == "9.9.9"
    assert doc["quality_threshold"] == 0.83 and doc["segmenter"] == "fold0/segmenter"
    assert (out / "fold2" / "segmenter.onnx").read_bytes() == b"segmenter.onnx-2"
    assert not (out / "fold0" / "checkpoints").exists()  # inference files only
    # each member folder stays a complete model (its own model.json), so `evaluate --fold all`
    # can score each member on its own fold
    assert json.loads((out / "fold1" / "model.json").read_text())["training"] == {"data": "x"}


def test_threshold_pooled_over_several_cv_evaluations(tmp_path):
    """EMIDEC alone has no poor case; pooled with MyoPS, where one case failed, Youden applies."""
    from pipeline.cli import app

    run = tmp_path / "cv"
    _fold(run, 0)

    def evaluation(name, cases):
        d = tmp_path / name
        d.mkdir()
        recs = [{"case": f"{name}{i}", "quality": q, "dice": {"myocardium": m}}
                for i, (q, m) in enumerate(cases)]
        (d / "metrics.json").write_text(json.dumps({"summary": {}, "cases": recs}))
        return d

    emidec = evaluation("emidec", [(0.90, 0.80), (0.88, 0.78), (0.86, 0.75), (0.91, 0.82)])
    myops = evaluation("myops", [(0.70, 0.10), (0.87, 0.77)])
    out = tmp_path / "w"
    res = CliRunner().invoke(app, ["ensemble", str(run), "--out", str(out), "--version", "1",
                                   "--cv-eval", str(emidec), "--cv-eval", str(myops), "--no-calibrate"])
    assert res.exit_code == 0, res.output
    doc = json.loads((out / "model.json").read_text())
    assert 0.70 < doc["quality_threshold"] <= 0.86
    assert doc["training"]["quality_threshold_rule"].startswith("youden on 6 CV cases")
    # EMIDEC alone: no poor case -> the lowest 5 % (here one case of four) is flagged
    out2 = tmp_path / "w2"
    res = CliRunner().invoke(app, ["ensemble", str(run), "--out", str(out2), "--version", "1",
                                   "--cv-eval", str(emidec), "--no-calibrate"])
    assert res.exit_code == 0, res.output
    doc = json.loads((out2 / "model.json").read_text())
    assert 0.86 < doc["quality_threshold"] < 0.88 and "lowest 5 %" in doc["training"]["quality_threshold_rule"]


def test_ensemble_refuses_a_fold_without_onnx(tmp_path):
    from pipeline.cli import app

    run = tmp_path / "cv"
    _fold(run, 0)
    _fold(run, 1, onnx=False)
    res = CliRunner().invoke(app, ["ensemble", str(run), "--out", str(tmp_path / "w"),
                                   "--version", "1", "--quality-threshold", "0.8"])
    assert res.exit_code != 0 and "fold1" in str(res.exception)


def test_min_infarct_percent_from_cv_and_override(tmp_path):
    """EMIDEC-like CV records with specks on normal hearts: the ensemble ships the minimum
    reportable infarct chosen on them; --min-infarct-percent replaces it."""
    from pipeline.cli import app

    run = tmp_path / "cv"
    _fold(run, 0)
    d = tmp_path / "eval"
    d.mkdir()
    cases = [(0.0, 0.4), (0.0, 1.2), (0.0, 0.0), (5.0, 3.1), (20.0, 18.0)]
    recs = [{"case": f"c{i}", "quality": 0.9, "dice": {"myocardium": 0.8},
             "percent": {"infarct_percent": {"gt": g, "pred": p}}} for i, (g, p) in enumerate(cases)]
    (d / "metrics.json").write_text(json.dumps({"summary": {}, "cases": recs}))
    out = tmp_path / "w"
    res = CliRunner().invoke(app, ["ensemble", str(run), "--out", str(out), "--version", "1",
                                   "--cv-eval", str(d), "--no-calibrate"])
    assert res.exit_code == 0, res.output
    doc = json.loads((out / "model.json").read_text())
    assert doc["min_infarct_percent"] == 1.25
    assert doc["training"]["min_infarct_percent_rule"]["after"]["correctly_none"] == 3
    assert "reported as none 1 -> 3 of 3" in res.output
    res = CliRunner().invoke(app, ["ensemble", str(run), "--out", str(out), "--version", "1",
                                   "--cv-eval", str(d), "--no-calibrate", "--min-infarct-percent", "0"])
    assert res.exit_code == 0, res.output
    assert json.loads((out / "model.json").read_text())["min_infarct_percent"] == 0.0
