"""The inference entry point and the `lgenode segment` command, with untrained networks."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from models import preprocess as pp
from models.segment import WeightsNotFoundError, clear_cache, load_model, segment_volume

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")


def test_missing_weights_error_explains_what_to_do(tmp_path, phantom, volume_of):
    img, _ = phantom()
    with pytest.raises(WeightsNotFoundError) as err:
        segment_volume(volume_of(img), weights_dir=tmp_path)
    msg = str(err.value)
    assert "lgenode pipeline train" in msg and "--weights" in msg and "model.json" in msg
    (tmp_path / "model.json").write_text(json.dumps({"name": "x", "version": "1"}))
    with pytest.raises(WeightsNotFoundError, match="segmenter.onnx"):
        segment_volume(volume_of(img), weights_dir=tmp_path)


def test_bundled_weights_folder_has_card_and_metadata():
    from models.segment import DEFAULT_WEIGHTS_DIR, read_model_info

    info = read_model_info(DEFAULT_WEIGHTS_DIR)
    assert info.name and info.version
    assert info.target_spacing_mm == pp.TARGET_SPACING_MM and info.roi_size == pp.ROI_SIZE
    card = (DEFAULT_WEIGHTS_DIR / "MODEL_CARD.md").read_text()
    for needle in ("CC BY-NC-SA 4.0", "non-commercial", "Research", "diagnosis", "## Results", "1.25 mm"):
        assert needle in card


@pytest.mark.tf
def test_mismatched_preprocessing_is_refused(tmp_path, untrained_weights, phantom, volume_of):
    w = tmp_path / "w"
    shutil.copytree(untrained_weights, w)
    meta = json.loads((w / "model.json").read_text())
    (w / "model.json").write_text(json.dumps({**meta, "target_spacing_mm": 1.0}))
    with pytest.raises(ValueError, match="target_spacing_mm"):
        load_model(w, "onnx")


@pytest.mark.tf
@pytest.mark.parametrize("runtime", ["onnx", "keras"])
def test_segment_volume_full_path(untrained_weights, phantom, volume_of, runtime):
    clear_cache()
    img, _ = phantom(rows=300, cols=320, centre=(150.0, 170.0), scale=1.6)
    vol = volume_of(img.astype(np.int16), (0.74, 0.74))
    res = segment_volume(vol, untrained_weights, runtime=runtime)
    assert res.labels.shape == vol.shape and res.labels.dtype == np.uint8
    assert set(np.unique(res.labels)) <= {0, 1, 2, 3, 4}
    assert res.model_name == "test-untrained" and res.model_version == "0.0.1-test" and res.runtime == runtime
    # The result reports the localisation preprocessing really used (network or its fallback).
    _, model = load_model(untrained_weights, runtime)
    _, pinfo = pp.preprocess_volume(vol, localiser=model.localiser)
    assert model.localiser is not None and res.localised_by == pinfo.localised_by != "given"
    assert res.centre == pytest.approx(pinfo.centre)
    # Stage timings are disjoint parts of the total, and the stages that compute take time.
    stages = ("load", "preprocess", "localise", "segment", "postprocess", "to_input_grid")
    assert sum(res.timings[s] for s in stages) <= res.timings["total"] + 1e-6
    assert all(res.timings[s] > 0.0 for s in ("preprocess", "localise", "segment", "total"))
    # nothing outside the 160 mm ROI (mapped back to the 0.74 mm input grid)
    info = res.preprocess.crop
    sp = pp.TARGET_SPACING_MM / 0.74
    outside = np.ones(vol.shape[1:], bool)
    r0, c0 = int((info.top - 1) * sp), int((info.left - 1) * sp)
    r1, c1 = int((info.top + 129) * sp) + 1, int((info.left + 129) * sp) + 1
    outside[max(r0, 0) : r1, max(c0, 0) : c1] = False
    assert not res.labels[:, outside].any()
    # post-processed output obeys the rules: one heart component
    from models.postprocess import keep_largest_heart_component

    np.testing.assert_array_equal(keep_largest_heart_component(res.roi_labels), res.roi_labels)


@pytest.mark.tf
def test_models_are_loaded_once(untrained_weights):
    clear_cache()
    a = load_model(untrained_weights, "onnx")
    b = load_model(untrained_weights, "onnx")
    assert a is b


@pytest.mark.tf
def test_cli_segment_writes_labels_and_overlays(untrained_weights, tmp_path, phantom, volume_of):
    import nibabel as nib
    import typer
    from typer.testing import CliRunner

    from models import cli
    from models.io import load_nifti, save_nifti

    img, _ = phantom(rows=220, cols=230, scale=1.3)
    vol = volume_of(img.astype(np.int16), (0.8, 0.8))
    src = save_nifti(vol.pixels, vol, tmp_path / "lge.nii.gz")
    app = typer.Typer()
    cli.register(app)
    app.command("noop")(lambda: None)  # keep `segment` a sub-command
    out = tmp_path / "out"
    r = CliRunner().invoke(app, ["segment", str(src), "--out", str(out), "--weights", str(untrained_weights)])
    assert r.exit_code == 0, r.output
    labels = nib.load(out / "labels.nii.gz")
    assert np.allclose(labels.affine, nib.load(src).affine)
    assert load_nifti(out / "labels.nii.gz").shape == load_nifti(src).shape
    overlays = sorted((out / "overlays").glob("slice_*.png"))
    assert len(overlays) == 3
    r = CliRunner().invoke(app, ["segment", str(src), "--out", str(out), "--weights", str(tmp_path / "none")])
    assert r.exit_code == 2 and "lgenode pipeline train" in r.output
