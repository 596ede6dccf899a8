"""int8 copies of the networks (models.quantize, pipeline.train.quantize) and the onnx-int8 runtime."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from models import preprocess as pp
from models.runtime import OnnxPredictor, Segmenter, weight_file
from models.segment import WeightsNotFoundError, clear_cache, load_model, segment_volume

pytest.importorskip("onnx")  # the quantiser needs it (train extra); serving int8 does not

from tests.shipped import SHIPPED, shipped_member


def test_weight_file_per_runtime():
    assert weight_file("fold0/segmenter", "onnx") == Path("fold0/segmenter.onnx")
    assert weight_file("fold0/segmenter", "onnx-int8") == Path("fold0/segmenter.int8.onnx")
    assert weight_file("segmenter", "keras") == Path("segmenter.keras")
    with pytest.raises(ValueError, match="onnx-int8"):
        weight_file("segmenter", "tflite")


def test_missing_int8_copy_says_how_to_make_it(tmp_path, phantom, volume_of):
    w = tmp_path / "w"
    shutil.copytree(SHIPPED, w, ignore=shutil.ignore_patterns("*.int8.onnx", "*.keras"))
    img, _ = phantom()
    with pytest.raises(WeightsNotFoundError, match="lgenode pipeline quantize"):
        segment_volume(volume_of(img), weights_dir=w, runtime="onnx-int8")


def _roi_inputs(shared_data: Path, fmt: str, ids: list[str]) -> np.ndarray:
    from pipeline.evaluate.cases import iter_cases

    _, model = load_model(SHIPPED, "onnx")
    return np.concatenate([pp.preprocess_volume(c.volume, localiser=model.localiser)[0]
                           for c in iter_cases(fmt, shared_data, ids)])


@pytest.mark.data
def test_int8_segmenter_keeps_the_labels_on_cases_it_was_not_calibrated_on(tmp_path, shared_data):
    from models.quantize import label_agreement, quantize_onnx

    calib = _roi_inputs(shared_data, "emidec-png", ["Case_N006", "Case_P002", "Case_P010"])
    test = _roi_inputs(shared_data, "myops-nifti", ["Case3004"])  # another data set, another scanner
    net = shipped_member() / "segmenter.onnx"
    dst = quantize_onnx(net, tmp_path / "segmenter.int8.onnx", calib)
    fp32, int8 = OnnxPredictor(net), OnnxPredictor(dst)
    assert dst.stat().st_size < 0.5 * net.stat().st_size  # int8 weights
    p32, p8 = fp32(test), int8(test)
    assert p8.shape == p32.shape and np.allclose(p8.sum(-1), 1.0, atol=1e-3)  # still a softmax
    assert label_agreement(p32, p8) > 0.99
    assert label_agreement(p32, np.roll(p8, 5, axis=1)) < 0.99  # the measure can fail
    with pytest.raises(ValueError, match="calibration"):
        quantize_onnx(net, tmp_path / "x.onnx", np.zeros((0, 128, 128, 1), np.float32))


@pytest.mark.data
def test_quantize_command_writes_members_served_by_onnx_int8(tmp_path, shared_data):
    """An ensemble folder (two members = copies of the shipped model, trained folds 0 and 1):
    each member is calibrated without its own validation fold, and `segment` serves int8."""
    from typer.testing import CliRunner

    from pipeline.cli import app

    w = tmp_path / "ens"
    info = json.loads((SHIPPED / "model.json").read_text())
    for m in ("fold0", "fold1"):
        (w / m).mkdir(parents=True)
        for f in ("segmenter.onnx", "localiser.onnx"):
            shutil.copy2(shipped_member() / f, w / m / f)
    info.update(members=["fold0", "fold1"], segmenter="fold0/segmenter", localiser="fold0/localiser")
    info.pop("int8", None)
    (w / "model.json").write_text(json.dumps(info))
    folds = json.loads(Path("pipeline/configs/emidec_folds.json").read_text())
    res = CliRunner().invoke(app, ["quantize", str(w), "--data-dir", str(shared_data), "--cases", "4"])
    assert res.exit_code == 0, res.output
    facts = json.loads((w / "model.json").read_text())["int8"]
    for k, m in enumerate(("fold0", "fold1")):
        assert weight_file(w / m / "segmenter", "onnx-int8").exists()
        assert weight_file(w / m / "localiser", "onnx-int8").exists()
        entry = facts["members"][m]
        assert entry["fold_left_out"] == k and entry["segmenter_label_agreement"] > 0.99
        assert 0 < entry["calibration_cases"] <= 8
    # fold k's validation cases are not among fold k's calibration cases
    from pipeline.train.quantize import held_out

    assert held_out(folds, 0) and held_out(folds, 0).isdisjoint(held_out(folds, 1))
    assert held_out(folds, None) == set() and held_out(None, 0) == set()

    clear_cache()
    model = Segmenter.from_dir(w, "onnx-int8", segmenter="fold0/segmenter", localiser="fold0/localiser",
                               members=["fold0", "fold1"])
    assert model.n_members == 2 and all(p.path.name == "segmenter.int8.onnx" for p in model.segmenters)
    from pipeline.evaluate.cases import iter_cases

    case = next(iter_cases("emidec-png", shared_data, ["Case_P021"]))
    r32 = segment_volume(case.volume, w, runtime="onnx")
    r8 = segment_volume(case.volume, w, runtime="onnx-int8")
    assert r8.runtime == "onnx-int8"
    myo32, myo8 = r32.labels >= 2, r8.labels >= 2
    dice = 2 * (myo32 & myo8).sum() / (myo32.sum() + myo8.sum())
    assert dice > 0.95, f"int8 vs float32 myocardium+scar Dice {dice:.3f}"
