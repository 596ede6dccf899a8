"""`lgenode pipeline regression-spec`: the CI floors of a weights folder come from a measurement."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pipeline.evaluate.regression import spec_from

WEIGHTS = Path(__file__).resolve().parents[2] / "models" / "weights"


def _summary(dice: dict[str, float], ccc: float | None) -> dict[str, object]:
    return {"pooled_class_dice": dice, "clinical_agreement": {"infarct_percent": {"ccc": ccc}}}


def test_floors_are_the_lowest_runtime_less_the_margin_rounded_down() -> None:
    emidec = {"onnx": _summary({"lv_cavity": 0.912, "myocardium_normal": 0.80, "infarct": 0.561, "no_reflow": 0.40}, 0.91),
              "onnx-int8": _summary({"lv_cavity": 0.905, "myocardium_normal": 0.81, "infarct": 0.55, "no_reflow": 0.43}, 0.88)}
    myops = {"onnx": _summary({"lv_cavity": 0.87, "myocardium_normal": 0.76, "infarct": 0.5}, 0.7)}
    spec = spec_from({"emidec-png": emidec, "myops-nifti": myops}, {"emidec-png": ["a"], "myops-nifti": ["b"]})
    assert spec["min_pooled_dice"] == {
        "emidec-png": {"lv_cavity": 0.87, "myocardium_normal": 0.77, "infarct": 0.52, "no_reflow": 0.37},
        "myops-nifti": {"lv_cavity": 0.84, "myocardium_normal": 0.73, "infarct": 0.47}}
    assert spec["min_infarct_percent_ccc"] == {"emidec-png": 0.83}
    assert spec["emidec_cases"] == ["a"] and spec["myops_cases"] == ["b"] and spec["min_lv_in_roi"] == 0.99
    assert "lowest over runtimes" in spec["note"]


def test_regression_spec_measures_the_shipped_weights(tmp_path, emidec_root, myops_root) -> None:  # type: ignore[no-untyped-def]
    """On the real weights and data: floors sit just under what they score on fold 0's cases,
    and the check tests/models/test_shipped_weights.py makes passes with them."""
    from pipeline.cli import app

    w = tmp_path / "weights"
    shutil.copytree(WEIGHTS, w, ignore=shutil.ignore_patterns("*.keras"))
    res = CliRunner().invoke(app, ["regression-spec", str(w), "--fold", "0", "--data-dir", str(emidec_root)])
    assert res.exit_code == 0, res.output
    spec = json.loads((w / "model.json").read_text())["regression"]
    folds = json.loads((Path(__file__).resolve().parents[2] / "pipeline" / "configs" / "emidec_folds.json").read_text())
    assert len(spec["emidec_cases"]) >= 10 and len(spec["myops_cases"]) == 3
    assert set(spec["emidec_cases"]) <= set(json.dumps(folds).replace('"', " ").split())
    from pipeline.evaluate.run import evaluate

    summary = evaluate(w, "emidec-png", tmp_path / "check", data_dir=emidec_root,
                       case_ids=spec["emidec_cases"], runtime="onnx", progress=False)
    for c, floor in spec["min_pooled_dice"]["emidec-png"].items():
        got = summary["pooled_class_dice"][c]
        assert floor <= got - 0.03 + 1e-9 and got - floor < 0.05, (c, got, floor)
    assert spec["min_infarct_percent_ccc"]["emidec-png"] <= summary["clinical_agreement"]["infarct_percent"]["ccc"]
