"""`evaluate-synthesis`: feature extractor, orchestration and the command on tiny tmp data."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import typer
from PIL import Image
from typer.testing import CliRunner

from pipeline.synth import evaluate_synthesis as ES
from pipeline.synth import physics

ROI = 128
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")  # keras + numpy 2


def _app() -> typer.Typer:
    from pipeline.synth.evaluate_synthesis_commands import register

    app = typer.Typer()

    @app.callback()
    def main() -> None:
        """test group (keeps the sub-command name)"""

    register(app)
    return app


def _pairs(path: Path, ring, n: int = 6, seed: int = 0, paired: bool = False) -> Path:
    rng = np.random.default_rng(seed)
    masks = np.stack([ring(rng.uniform(12, 18), rng.uniform(22, 26)) for _ in range(n)])
    masks[::2][(masks[::2] == 2) & (np.arange(ROI)[None, None, :] > 70)] = 3  # lesions on half of them
    images = np.stack([physics.render(m, np.random.default_rng([seed, i]))[0] for i, m in enumerate(masks)])
    arrays = {"images": images, "masks": masks}
    if paired:
        arrays["real"] = np.clip(images + rng.normal(0, 0.05, images.shape), 0, 1.5).astype(np.float32)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, **arrays)
    return path


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory) -> Path:
    from pipeline.commands import _tf_defaults

    _tf_defaults()
    from models.networks import build_segmenter

    folder = tmp_path_factory.mktemp("weights")
    build_segmenter(base_filters=4, depth=4, dropout=0.0).save(folder / "segmenter.keras")
    return folder


# ------------------------------------------------------------------------------------- loading
def test_parse_named():
    assert ES.parse_named("hyb=runs/a/pairs.npz") == ("hyb", Path("runs/a/pairs.npz"))
    assert ES.parse_named("runs/a/pairs.npz") == ("a", Path("runs/a/pairs.npz"))
    assert ES.parse_named("runs/b") == ("b", Path("runs/b"))
    with pytest.raises(ValueError):
        ES.parse_named("=x.npz")


def test_load_image_set_accepts_folders_and_checks_arrays(tmp_path, ring):
    _pairs(tmp_path / "a" / "pairs.npz", ring, n=4)
    (tmp_path / "a" / "pairs.json").write_text(json.dumps({"generator": "physics"}))
    s = ES.load_image_set("a", tmp_path / "a")
    assert s.images.shape == s.masks.shape == (4, ROI, ROI) and s.meta == {"generator": "physics"}
    assert s.real is None and s.kind == "synthetic"
    with pytest.raises(ValueError, match="real"):
        ES.load_image_set("a", tmp_path / "a", paired=True)
    np.savez(tmp_path / "bad.npz", images=np.zeros((2, 64, 64), np.float32), masks=np.zeros((2, 64, 64), np.uint8))
    with pytest.raises(ValueError, match="128"):
        ES.load_image_set("bad", tmp_path / "bad.npz")
    with pytest.raises(FileNotFoundError):
        ES.load_image_set("none", tmp_path / "missing")


def test_kid_subset_is_at_most_half_the_smaller_set():
    assert ES.kid_subset(122, 300, 1000) == 61
    assert ES.kid_subset(5000, 4000, 1000) == 1000
    assert ES.kid_subset(3, 3, 1000) == 2


# ------------------------------------------------------------------------------------- features
@pytest.mark.tf
def test_feature_extractor_pools_the_bottleneck(tiny_weights):
    import keras

    from pipeline.synth.features import BOTTLENECK_LAYER, load_feature_extractor

    fx = load_feature_extractor(tiny_weights, batch_size=3)
    assert fx.layer == BOTTLENECK_LAYER == "bottleneck_out"
    assert fx.dim == 4 * 2**4 and fx.feature_map_shape == (8, 8, 64)  # base 4, depth 4
    x = np.random.default_rng(0).uniform(0, 1, (5, ROI, ROI)).astype(np.float32)
    f = fx(x)
    assert f.shape == (5, 64)
    # the same as pooling the layer output by hand (batches of 3 and 2 joined correctly)
    model = keras.models.load_model(tiny_weights / "segmenter.keras", compile=False)
    fmap = keras.Model(model.inputs, model.get_layer("bottleneck_out").output).predict_on_batch(x[..., None])
    np.testing.assert_allclose(f, np.asarray(fmap).mean(axis=(1, 2)), rtol=1e-4, atol=1e-6)
    assert fx.describe()["layer"] == "bottleneck_out"
    with pytest.raises(ValueError, match="not in model"):
        load_feature_extractor(tiny_weights, layer="no_such_layer")


# ------------------------------------------------------------------------------------- orchestration
def _reference(ring, n: int = 12) -> ES.RealReference:
    rng = np.random.default_rng(1)
    masks = np.stack([ring(rng.uniform(12, 18), rng.uniform(22, 26)) for _ in range(n)])
    masks[:4][(masks[:4] == 2) & (np.arange(ROI)[None, None, :] < 60)] = 3
    images = np.stack([physics.render(m, np.random.default_rng([9, i]))[0] for i, m in enumerate(masks)])
    return ES.RealReference(images, masks, ["Case_X"] * n, ["Case_X"], "toy reference", n)


def _hist_features(images: np.ndarray) -> np.ndarray:
    """Cheap stand-in features: intensity histogram + mean (no network)."""
    x = np.clip(images, 0, 1.5).reshape(len(images), -1)
    return np.concatenate([np.stack([np.histogram(v, bins=8, range=(0, 1.5))[0] / v.size for v in x]),
                           x.mean(1, keepdims=True)], axis=1)


def _threshold_segment(x: np.ndarray) -> np.ndarray:
    """Stand-in segmenter: bright = cavity, mid = myocardium."""
    im = x[..., 0]
    return np.where(im > 0.6, 1, np.where((im > 0.2) & (im <= 0.6), 2, 0)).astype(np.uint8)


def test_run_with_injected_networks_and_fake_pix2pix(tmp_path, ring):
    ref = _reference(ring)
    copy = ES.ImageSet("copy", ref.images.copy(), ref.masks.copy(), ref.images.copy(), "copy", "paired")
    calls = []

    def fake_loader(folder: Path):
        calls.append(folder)
        return lambda masks: (masks.astype(np.float32) / 4.0)

    res = ES.run(tmp_path / "out", reference=ref, synthetic=[copy], weights=tmp_path, pix2pix=tmp_path / "p2p",
                 pix2pix_loader=fake_loader, features=_hist_features, segment=_threshold_segment,
                 kid_subsets=5, seed=3, progress=False)
    assert calls == [tmp_path / "p2p"]
    rows = {r["name"]: r for r in res["sets"]}
    assert set(rows) == {"copy", "physics(real masks)", "pix2pix(real masks)"}
    # a perfect copy of the reference: no distance, the segmenter scores it exactly like the reference
    assert rows["copy"]["fd"] == pytest.approx(0.0, abs=1e-6)
    np.testing.assert_equal(rows["copy"]["fcn"], res["reference"]["fcn"])  # NaN == NaN here
    assert rows["copy"]["paired"]["psnr_mean"] == float("inf") and rows["copy"]["paired"]["ssim_mean"] == 1.0
    # generated sets are paired with the reference images and far from them in feature space
    for name in ("physics(real masks)", "pix2pix(real masks)"):
        assert rows[name]["paired"]["n"] == len(ref.images) and rows[name]["fd"] > 0
    assert rows["pix2pix(real masks)"]["kid_mean"] > res["baseline"]["kid_mean"]
    doc = json.loads((tmp_path / "out" / "synthesis.json").read_text())
    assert doc["sets"][0]["paired"]["psnr_mean"] is None  # inf is not JSON
    assert doc["meta"]["seed"] == 3 and doc["baseline"]["n_a"] + doc["baseline"]["n_b"] == len(ref.images)
    md = (tmp_path / "out" / "synthesis.md").read_text()
    assert "pix2pix(real masks)" in md and "198.15" in md


def test_max_images_caps_every_set(tmp_path, ring):
    ref = _reference(ring, n=12)
    s = ES.ImageSet("s", ref.images, ref.masks, None, "s", "synthetic")
    res = ES.run(tmp_path, reference=ref, synthetic=[s], weights=tmp_path, physics=False, max_images=8,
                 features=_hist_features, segment=_threshold_segment, kid_subsets=3, progress=False)
    assert res["reference"]["n"] == 8 and res["reference"]["n_total"] == 12
    assert res["sets"][0]["n"] == 8 and res["sets"][0]["n_total"] == 12
    assert res["sets"][0]["paired"] is None


# ------------------------------------------------------------------------------------- command
@pytest.mark.tf
def test_command_end_to_end_on_fake_emidec(tmp_path, synthetic_data, tiny_weights, ring):
    from pipeline.datasets import folds as F

    folds = F.save_folds(F.make_folds(F.emidec_case_infos(synthetic_data), n_folds=2, seed=0), tmp_path / "f.json")
    val = F.split(F.load_folds(folds), 1)[1]
    syn = _pairs(tmp_path / "syn" / "pairs.npz", ring, n=6)
    par = _pairs(tmp_path / "par.npz", ring, n=5, seed=2, paired=True)
    out = tmp_path / "out"
    res = CliRunner().invoke(_app(), [
        "evaluate-synthesis", "--synthetic", f"hyb={syn.parent}", "--paired", f"p2p={par}", "--out", str(out),
        "--weights", str(tiny_weights), "--data-dir", str(synthetic_data), "--folds", str(folds),
        "--real-fold", "1", "--kid-subsets", "4", "--quiet"])
    assert res.exit_code == 0, res.output
    doc = json.loads((out / "synthesis.json").read_text())
    assert doc["meta"]["features"]["layer"] == "bottleneck_out" and doc["meta"]["features"]["dim"] == 64
    assert doc["meta"]["runtime"] == "keras"  # no ONNX file in the tiny weights folder
    assert doc["reference"]["cases"] == val and doc["reference"]["n"] == 3 * len(val)  # 3 slices per fake case
    names = [r["name"] for r in doc["sets"]]
    assert names == ["hyb", "p2p", "physics(real masks)"]
    by = dict(zip(names, doc["sets"]))
    assert by["hyb"]["paired"] is None and by["p2p"]["paired"]["n"] == 5
    assert by["physics(real masks)"]["paired"]["n"] == doc["reference"]["n"]
    for r in doc["sets"]:
        assert set(r["fcn"]) == {"1", "2", "3", "4", "mean"} and r["matched"]["n_b"] == doc["baseline"]["n_b"]
    md = (out / "synthesis.md").read_text()
    assert "bottleneck_out" in md and "not comparable" in md and "| hyb | 6 |" in md
    with Image.open(out / "grid.png") as im:
        assert im.size[1] > im.size[0] / 6 * 3  # four rows (real + 3 sets) of six columns
    bad = CliRunner().invoke(_app(), ["evaluate-synthesis", "--out", str(out), "--real-fold", "0",
                                      "--real-cases", "Case_N000", "--weights", str(tiny_weights)])
    assert bad.exit_code != 0


@pytest.mark.tf
def test_command_pix2pix_option_uses_the_real_loader(tmp_path, synthetic_data, tiny_weights):
    P = pytest.importorskip("pipeline.synth.pix2pix")
    from pipeline.synth.gan_layers import build_unet_generator

    gen_dir = tmp_path / "p2p"
    gen_dir.mkdir()
    build_unet_generator(P.N_CLASSES, 1, base_filters=4, depth=3).save(gen_dir / "generator.keras")
    (gen_dir / "gan.json").write_text(json.dumps({"kind": "pix2pix", "inference_dropout": False}))
    out = tmp_path / "out"
    res = CliRunner().invoke(_app(), [
        "evaluate-synthesis", "--pix2pix", str(gen_dir), "--no-physics", "--out", str(out), "--weights",
        str(tiny_weights), "--data-dir", str(synthetic_data), "--real-cases", "Case_N000,Case_P001,Case_P002",
        "--kid-subsets", "2", "--quiet"])
    assert res.exit_code == 0, res.output
    (row,) = json.loads((out / "synthesis.json").read_text())["sets"]
    assert row["name"] == "pix2pix(real masks)" and row["source"] == str(gen_dir)
    assert row["n"] == 9 and row["paired"]["n"] == 9  # 3 cases x 3 slices, each paired with its real slice
    missing = CliRunner().invoke(_app(), ["evaluate-synthesis", "--pix2pix", str(tmp_path), "--out", str(out),
                                          "--weights", str(tiny_weights)])
    assert missing.exit_code == 2 and "generator.keras" in missing.output


def test_help_lists_the_options():
    res = CliRunner().invoke(_app(), ["evaluate-synthesis", "--help"])
    assert res.exit_code == 0
    for opt in ("--synthetic", "--paired", "--pix2pix", "--real-fold", "--real-cases", "--max-images", "--seed"):
        assert opt in res.output


# ------------------------------------------------------------------------------------- real data
@pytest.mark.slow
@pytest.mark.tf
def test_real_reference_with_shipped_weights(tmp_path, emidec_root):
    from models.segment import DEFAULT_WEIGHTS_DIR, read_model_info

    # the features come from the Keras copy of the model's first segmenter (fold0/ in the ensemble)
    stem = read_model_info(DEFAULT_WEIGHTS_DIR).segmenter
    assert (DEFAULT_WEIGHTS_DIR / f"{stem}.keras").exists(), f"models/weights/{stem}.keras is shipped"
    out = tmp_path / "real"
    res = CliRunner().invoke(_app(), ["evaluate-synthesis", "--out", str(out), "--data-dir", str(emidec_root),
                                      "--max-images", "24", "--kid-subsets", "10", "--quiet"])
    assert res.exit_code == 0, res.output
    doc = json.loads((out / "synthesis.json").read_text())
    assert doc["reference"]["n_total"] > 24 and doc["meta"]["features"]["dim"] == 256
    # the real-trained segmenter segments its held-back real slices far better than chance
    assert doc["reference"]["fcn"]["1"] > 0.6
    phys = doc["sets"][0]
    assert phys["name"] == "physics(real masks)" and phys["paired"]["n"] == 24
    # rendered images are far from real ones at equal sample sizes
    assert phys["matched"]["fd"] > doc["baseline"]["fd"] and phys["matched"]["kid_mean"] > doc["baseline"]["kid_mean"]
