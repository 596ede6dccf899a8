"""Regression check of the shipped weights (``models/weights``) on development cases.

A broken model, ONNX export or preprocessing change must not land green: the cases, the
minimum pooled Dice per class, the minimum infarct-% concordance and the minimum share of the
LV inside the ROI are stored with the weights (``model.json`` → ``regression``, a little under
what the model card claims) and checked here through the node's own inference entry point.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

WEIGHTS = Path(__file__).resolve().parents[2] / "models" / "weights"


def _spec() -> dict:
    spec = json.loads((WEIGHTS / "model.json").read_text()).get("regression")
    assert spec, "models/weights/model.json has no 'regression' block: say what CI must check"
    return spec


def _runtimes() -> list[str]:
    """float32 always; the int8 copies too when the weights ship them (model.json "int8")."""
    info = json.loads((WEIGHTS / "model.json").read_text())
    return ["onnx"] + (["onnx-int8"] if info.get("int8") else [])


@pytest.mark.parametrize("runtime", _runtimes())
@pytest.mark.parametrize("fmt,key", [("emidec-png", "emidec_cases"), ("myops-nifti", "myops_cases")])
def test_shipped_weights_meet_their_card(fmt, key, runtime, shared_data, tmp_path):
    from pipeline.evaluate.run import evaluate

    spec = _spec()
    cases = spec[key]
    assert cases, f"no {key} to check"
    summary = evaluate(WEIGHTS, fmt, tmp_path, data_dir=shared_data, case_ids=cases,
                       runtime=runtime, progress=False)
    dice = summary["pooled_class_dice"]
    low = {k: (round(dice[k], 3), v) for k, v in spec["min_pooled_dice"][fmt].items()
           if dice[k] is None or dice[k] < v}
    assert not low, f"pooled Dice below the regression floor (got, floor): {low}"
    ccc_floor = spec.get("min_infarct_percent_ccc", {}).get(fmt)
    if ccc_floor is not None:
        ccc = summary["clinical_agreement"]["infarct_percent"]["ccc"]
        assert ccc >= ccc_floor, f"infarct % CCC {ccc:.3f} < {ccc_floor}"
    doc = json.loads((tmp_path / "metrics.json").read_text())
    cut = [(r["case"], round(r["lv_in_roi"], 3)) for r in doc["cases"]
           if r["lv_in_roi"] < spec["min_lv_in_roi"]]
    assert not cut, f"ROI cuts off part of the LV: {cut}"
