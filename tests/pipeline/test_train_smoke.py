"""End to end on a synthetic EMIDEC-like data set: `train` (2 epochs x 2 steps, both stages),
then `evaluate` of that run through models.segment, for both formats, and `cv-report`.

Training runs in a subprocess (the real CLI): TensorFlow state (oneDNN settings) stays isolated
from the other tests of the session.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.tf
pytest.importorskip("keras")

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def trained_run(synthetic_data, tmp_path_factory) -> tuple[Path, Path]:
    tmp = tmp_path_factory.mktemp("train")
    folds = tmp / "folds.json"
    run = tmp / "run"
    env = {**os.environ, "PYTHONPATH": str(REPO), "KERAS_BACKEND": "tensorflow"}
    cmd = [sys.executable, "-m", "lgenode", "pipeline", "train", "--data-dir", str(synthetic_data),
           "--folds", str(folds), "--fold", "0", "--epochs", "2", "--steps-per-epoch", "2",
           "--batch-size", "4", "--base-filters", "4", "--depth", "2", "--localiser-epochs", "2",
           "--no-export-onnx", "--quiet", "--out", str(run)]
    proc = subprocess.run(cmd, env=env, cwd=tmp, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return run, folds


def test_train_writes_run_folder(trained_run):
    run, folds = trained_run
    for name in ("segmenter.keras", "localiser.keras", "model.json", "history.json",
                 "history_localiser.json", "curves.png", "curves_localiser.png",
                 "train_config.json"):
        assert (run / name).is_file(), name
    assert folds.is_file()  # created from the data on first use
    hist = json.loads((run / "history.json").read_text())
    assert len(hist["epochs"]) == 2
    for e in hist["epochs"]:
        assert math.isfinite(e["loss"]) and math.isfinite(e["val_loss"])
        assert 0.0 <= e["val_dice"] <= 1.0 and e["ms_per_step"] > 0
    cfg = json.loads((run / "train_config.json").read_text())
    fold0 = json.loads(folds.read_text())["folds"][0]
    val = fold0["val"] + fold0.get("val_myops", [])
    # the synthetic data set has 2 MyoPS volumes: dealt to folds 0 and 1 when the file was made
    assert fold0["val_myops"] and any(c.startswith("Case3") for c in cfg["train_cases"])
    assert cfg["val_cases"] == val and not set(cfg["train_cases"]) & set(val)
    info = json.loads((run / "model.json").read_text())
    assert info["segmenter"] == "segmenter" and info["localiser"] == "localiser"


def test_saved_models_load_with_stock_keras(trained_run):
    import keras

    run, _ = trained_run
    m = keras.models.load_model(run / "segmenter.keras", compile=False)  # no custom objects
    assert m.output_shape[-1] == 5


def test_evaluate_emidec_fold_and_cv_report(trained_run, synthetic_data, tmp_path):
    from typer.testing import CliRunner

    from pipeline.cli import app

    run, folds = trained_run
    out = tmp_path / "eval"
    res = CliRunner().invoke(app, ["evaluate", "--data-dir", str(synthetic_data), "--format",
                                   "emidec-png", "--weights", str(run), "--folds", str(folds),
                                   "--fold", "0", "--runtime", "keras", "--quiet", "--out",
                                   str(out)])
    assert res.exit_code == 0, res.output
    doc = json.loads((out / "metrics.json").read_text())
    val = json.loads(folds.read_text())["folds"][0]["val"]
    assert sorted(r["case"] for r in doc["cases"]) == sorted(val)
    assert doc["meta"]["runtime"] == "keras" and doc["meta"]["fold"] == 0
    s = doc["summary"]
    assert s["units"] == {"distance": "px", "volume": "px"}
    for v in s["per_case_dice"].values():
        assert 0.0 <= v["all_cases"]["mean"] <= 1.0
    assert (out / "metrics.md").read_text().startswith("# Evaluation: emidec-png")
    assert len(list((out / "worst").glob("*.png"))) == min(5, len(val))
    loc = s["localisation"]
    assert loc["n_cases"] == len(val) and loc["unit"] == "px"
    assert all(r["centre_error"] >= 0 and 0 <= r["lv_in_roi"] <= 1 for r in doc["cases"])
    assert "## (e) LV localisation (px)" in (out / "metrics.md").read_text()

    rep = CliRunner().invoke(app, ["cv-report", str(out), "--out", str(tmp_path / "cv")])
    assert rep.exit_code == 0, rep.output
    cv = json.loads((tmp_path / "cv" / "metrics.json").read_text())
    assert cv["summary"]["n_cases"] == len(val) and "0" in cv["folds"]
    assert sum(cv["meta"]["localised_by"].values()) == len(val)


def test_evaluate_myops_units(trained_run, synthetic_data, tmp_path):
    from typer.testing import CliRunner

    from pipeline.cli import app

    run, _ = trained_run
    res = CliRunner().invoke(app, ["evaluate", "--data-dir", str(synthetic_data), "--format",
                                   "myops-nifti", "--weights", str(run), "--runtime", "keras",
                                   "--quiet", "--out", str(tmp_path)])
    assert res.exit_code == 0, res.output
    doc = json.loads((tmp_path / "metrics.json").read_text())
    assert doc["summary"]["units"] == {"distance": "mm", "volume": "mL"}
    assert doc["summary"]["pooled_class_dice"]["no_reflow"] is None
    assert [r["case"] for r in doc["cases"]] == ["Case3001", "Case3002"]


def test_resume_continues_history_and_schedule(trained_run, synthetic_data, tmp_path):
    """`--resume` on a finished 2-epoch run with `--epochs 3` trains exactly one more epoch per
    stage, keeps the earlier history and continues the poly schedule where it was."""
    import shutil

    run, folds = trained_run
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    before = json.loads((copy / "history.json").read_text())["epochs"]
    env = {**os.environ, "PYTHONPATH": str(REPO), "KERAS_BACKEND": "tensorflow"}
    cmd = [sys.executable, "-m", "lgenode", "pipeline", "train", "--data-dir", str(synthetic_data),
           "--folds", str(folds), "--fold", "0", "--epochs", "3", "--steps-per-epoch", "2",
           "--batch-size", "4", "--base-filters", "4", "--depth", "2", "--localiser-epochs", "3",
           "--no-export-onnx", "--quiet", "--resume", "--out", str(copy)]
    proc = subprocess.run(cmd, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    after = json.loads((copy / "history.json").read_text())["epochs"]
    assert [e["epoch"] for e in after] == [1, 2, 3]
    assert after[:2] == before
    # poly: lr(e) = lr0 * (1 - e / 3) ** 0.9 for the resumed epoch (index 2)
    assert after[2]["learning_rate"] == pytest.approx(1e-3 * (1 / 3) ** 0.9, rel=1e-3)
    loc = json.loads((copy / "history_localiser.json").read_text())["epochs"]
    assert [e["epoch"] for e in loc] == [1, 2, 3]
    cfg = json.loads((copy / "train_config.json").read_text())
    assert cfg["segmenter"]["resumed_from_epoch"] == 2
