"""pix2pix: losses, batches, training run files, resume, generation, CLI (tiny nets, fake data)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

keras = pytest.importorskip("keras")

from pipeline.synth import pix2pix as P
from pipeline.synth.pix2pix_commands import register

TINY = {"base_filters": 4, "depth": 3, "disc_filters": 4, "disc_layers": 2, "batch_size": 2, "n_samples": 3, "n_val": 4}


def _np(x) -> np.ndarray:
    return keras.ops.convert_to_numpy(x)


# ---------------------------------------------------------------------------------- losses

def test_weighted_l1_weights_each_class_as_specified():
    """The same error on one pixel of class c costs w_c / w_0 times the error on a background pixel."""
    masks = np.zeros((1, 8, 8), np.uint8)
    for c in range(1, 5):
        masks[0, c, c] = c
    w = P.pixel_weights(masks)
    real = np.zeros((1, 8, 8, 1), np.float32)
    costs = []
    for c in range(5):
        fake = np.zeros_like(real)
        r = 0 if c == 0 else c
        fake[0, r, (7 if c == 0 else r), 0] = 0.5  # background pixel (0, 7) or the class-c pixel
        costs.append(float(_np(P.weighted_l1(real, fake, w))))
    ratios = np.array(costs) / costs[0]
    np.testing.assert_allclose(ratios, np.array(P.SEED_CLASS_WEIGHTS) / P.SEED_CLASS_WEIGHTS[0], rtol=1e-5)


def test_weighted_l1_is_a_weighted_mean():
    rng = np.random.default_rng(0)
    masks = rng.integers(0, 5, (2, 16, 16)).astype(np.uint8)
    real, fake = rng.uniform(-1, 1, (2, 2, 16, 16, 1)).astype(np.float32)
    w = P.pixel_weights(masks)
    expected = (w * np.abs(fake - real)).sum() / w.sum()
    assert float(_np(P.weighted_l1(real, fake, w))) == pytest.approx(expected, rel=1e-5)
    # equal weights: the ordinary L1, so lambda keeps its pix2pix meaning
    ones = P.pixel_weights(masks, (2.0,) * 5)
    assert float(_np(P.weighted_l1(real, fake, ones))) == pytest.approx(np.abs(fake - real).mean(), rel=1e-5)


def test_bce_logits_targets():
    logits = np.full((1, 4, 4, 1), 3.0, np.float32)
    assert float(_np(P.bce_logits(logits, 1.0))) == pytest.approx(np.log1p(np.exp(-3.0)), rel=1e-4)
    assert float(_np(P.bce_logits(logits, 0.0))) == pytest.approx(np.log1p(np.exp(3.0)), rel=1e-4)


def test_encoding_rejects_bad_labels():
    assert P.one_hot(np.array([[0, 4]], np.uint8)).shape == (1, 2, 5)
    with pytest.raises(ValueError):
        P.one_hot(np.array([[5]]))
    with pytest.raises(ValueError):
        P.pixel_weights(np.zeros((1, 2, 2), np.uint8), (1, 2, 3))


# ---------------------------------------------------------------------------------- batches

def _toy_pairs(n: int = 12) -> P.SlicePairs:
    rng = np.random.default_rng(0)
    masks = np.zeros((n, 128, 128), np.uint8)
    masks[:, 40:90, 30:60] = 2
    masks[:, 50:80, 35:50] = 1
    masks[::3, 40:50, 50:60] = 3  # lesion on every 3rd slice
    masks[::6, 42:45, 52:55] = 4
    masks[:, 0, 0] = rng.integers(0, 2, n)  # slices differ
    images = masks.astype(np.float32) / 4.0  # image is a function of the mask: pairing is checkable
    return P.SlicePairs(images, masks, [f"Case_P{i // 4:03d}" for i in range(n)])


def test_batches_are_deterministic_paired_and_favour_lesions(tmp_path):
    pairs = _toy_pairs()
    cfg = P.Pix2PixConfig(out=tmp_path, batch_size=8, seed=3, p_lesion_slice=1.0)
    a, b = P.make_batch(pairs, cfg, 2, 5), P.make_batch(pairs, cfg, 2, 5)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(a[1], P.make_batch(pairs, cfg, 2, 6)[1])
    cond, real, w = a
    labels = cond.argmax(-1)
    # the augmented image still belongs to its augmented mask
    np.testing.assert_allclose(real[..., 0], 2 * np.clip(labels / 4.0, 0, 1) - 1, atol=1e-6)
    np.testing.assert_allclose(w[..., 0], np.array(P.SEED_CLASS_WEIGHTS, np.float32)[labels])
    assert all((lab >= 3).any() for lab in labels)  # p_lesion_slice 1: every slice has a lesion


def test_dihedral_augmentation_changes_orientation(tmp_path):
    pairs = _toy_pairs()
    orient = {}
    for aug in P.AUGMENTS:
        cfg = P.Pix2PixConfig(out=tmp_path, batch_size=16, augment=aug)
        lab = P.make_batch(pairs, cfg, 0, 0)[0].argmax(-1)
        orient[aug] = {(lab[i] == 1).nonzero()[0].mean().round() for i in range(len(lab))}
    assert len(orient["none"]) == 1 and len(orient["dihedral"]) > 1


def test_fixed_slices_mix_lesion_and_other_slices():
    pairs = _toy_pairs()
    idx = P.fixed_slices(pairs, 6)
    assert len(idx) == 6 and len(set(idx)) == 6
    has_lesion = np.isin(idx, pairs.lesion)
    assert has_lesion.sum() == 3


# ---------------------------------------------------------------------------------- training

@pytest.mark.tf
def test_steps_overfit_a_fixed_batch(tmp_path):
    keras.utils.set_random_seed(0)
    # a larger learning rate than 2e-4 so that 30 steps of a tiny net show it
    cfg = P.Pix2PixConfig(out=tmp_path, learning_rate=2e-3, **{**TINY, "dropout": 0.0})
    g, d = P.build_models(cfg)
    trainer = P.Pix2PixTrainer(g, d, P.make_optimizer(cfg), P.make_optimizer(cfg), cfg.l1_lambda)
    cond, real, w = P.make_batch(_toy_pairs(), cfg, 0, 0)
    losses = [trainer.step(cond, real, w)["g_l1"] for _ in range(30)]
    assert np.isfinite(losses).all()
    assert np.mean(losses[-3:]) < 0.7 * np.mean(losses[:3])


@pytest.fixture(scope="module")
def data_and_folds(synthetic_data, tmp_path_factory) -> tuple[Path, Path]:
    from pipeline.datasets import folds as F

    path = tmp_path_factory.mktemp("folds") / "folds.json"
    F.save_folds(F.make_folds(F.emidec_case_infos(synthetic_data), n_folds=2, seed=0), path)
    return synthetic_data, path


@pytest.fixture(scope="module")
def trained(data_and_folds, tmp_path_factory) -> Path:
    data, folds = data_and_folds
    out = tmp_path_factory.mktemp("p2p") / "gen"
    cfg = P.Pix2PixConfig(out=out, data_dir=str(data), folds_file=folds, exclude_fold=1, epochs=2,
                          steps_per_epoch=2, **TINY)
    P.train(cfg, progress=False)
    return out


@pytest.mark.tf
def test_train_writes_every_file(trained, data_and_folds):
    from pipeline.datasets import folds as F

    for name in ("generator.keras", "discriminator.keras", "gan.json", "history.json", "curves.png",
                 "samples.png", "MODEL_CARD.md", "checkpoints/state.json", "checkpoints/g_opt.npz"):
        assert (trained / name).is_file(), name
    hist = json.loads((trained / "history.json").read_text())["epochs"]
    assert [e["epoch"] for e in hist] == [1, 2]
    for key in ("d_loss", "g_adv", "g_l1", "ms_per_step", "val_l1"):
        assert all(np.isfinite(e[key]) for e in hist), key
    gan = json.loads((trained / "gan.json").read_text())
    _, held = F.split(F.load_folds(data_and_folds[1]), 1)
    assert gan["kind"] == "pix2pix" and gan["held_out_cases"] == sorted(held)
    assert gan["train_cases"] and not set(gan["train_cases"]) & set(held)  # no leak of fold 1
    assert gan["settings"]["l1_lambda"] == 100.0 and gan["settings"]["class_weights"] == [1, 7, 11, 26, 90]
    card = (trained / "MODEL_CARD.md").read_text()
    assert "CC BY-NC-SA" in card and "fold 1" in card and f"{len(gan['train_cases'])} development" in card


@pytest.mark.tf
def test_existing_run_needs_resume(trained, data_and_folds):
    data, folds = data_and_folds
    cfg = P.Pix2PixConfig(out=trained, data_dir=str(data), folds_file=folds, exclude_fold=1, epochs=3,
                          steps_per_epoch=2, **TINY)
    with pytest.raises(FileExistsError):
        P.train(cfg, progress=False)
    with pytest.raises(ValueError, match="base_filters"):
        P.train(P.Pix2PixConfig(**{**cfg.__dict__, "base_filters": 8}), resume=True, progress=False)


@pytest.mark.tf
def test_resume_continues_from_the_saved_epoch(data_and_folds, tmp_path):
    """Two epochs, then resume to three == three epochs in one go (same batches, restored weights
    and optimizer state); the third epoch must not start from fresh weights."""
    data, folds = data_and_folds
    common = dict(data_dir=str(data), folds_file=folds, exclude_fold=1, steps_per_epoch=2,
                  **{**TINY, "dropout": 0.0})
    P.train(P.Pix2PixConfig(out=tmp_path / "a", epochs=2, **common), progress=False)
    P.train(P.Pix2PixConfig(out=tmp_path / "a", epochs=3, **common), resume=True, progress=False)
    P.train(P.Pix2PixConfig(out=tmp_path / "b", epochs=3, **common), progress=False)
    ha = json.loads((tmp_path / "a" / "history.json").read_text())["epochs"]
    hb = json.loads((tmp_path / "b" / "history.json").read_text())["epochs"]
    assert [e["epoch"] for e in ha] == [1, 2, 3]
    assert json.loads((tmp_path / "a" / "checkpoints" / "state.json").read_text())["epoch"] == 3
    for key in ("g_l1", "d_loss", "val_l1"):
        assert ha[2][key] == pytest.approx(hb[2][key], rel=1e-3), key


# ---------------------------------------------------------------------------------- generation

@pytest.mark.tf
def test_load_generator_contract(trained):
    masks = _toy_pairs(5).masks
    gen = P.load_generator(trained, dropout=False)
    a = gen(masks)
    assert a.shape == masks.shape and a.dtype == np.float32
    assert a.min() >= 0.0 and a.max() <= 1.5  # pp.normalize_intensity range
    np.testing.assert_array_equal(a, P.load_generator(trained, dropout=False)(masks))
    s1 = P.load_generator(trained, dropout=True, seed=1)(masks)
    np.testing.assert_array_equal(s1, P.load_generator(trained, dropout=True, seed=1)(masks))
    with pytest.raises(ValueError):
        gen(masks[:, :64, :64])


@pytest.mark.tf
def test_generate_writes_valid_pairs(trained, tmp_path):
    masks = _toy_pairs(7).masks
    np.savez(tmp_path / "masks.npz", masks=masks, images=np.zeros(masks.shape, np.float32))
    npz = P.generate_pairs(trained, tmp_path / "masks.npz", tmp_path / "out", seed=0, batch_size=3,
                           progress=False)
    with np.load(npz) as z:
        assert z["images"].dtype == np.float32 and z["images"].shape == masks.shape
        assert z["masks"].dtype == np.uint8
        np.testing.assert_array_equal(z["masks"], masks)
        assert np.isfinite(z["images"]).all()
    meta = json.loads((tmp_path / "out" / "pairs.json").read_text())
    assert meta["source"] == "pix2pix" and meta["n"] == 7 and meta["seed"] == 0
    assert (tmp_path / "out" / "preview.png").is_file()


def test_read_masks_rejects_bad_input(tmp_path):
    np.savez(tmp_path / "x.npz", images=np.zeros((2, 8, 8)))
    with pytest.raises(ValueError, match="masks"):
        P.read_masks(tmp_path / "x.npz")
    np.savez(tmp_path / "y.npz", masks=np.full((2, 8, 8), 7, np.uint8))
    with pytest.raises(ValueError):
        P.read_masks(tmp_path / "y.npz")


# ---------------------------------------------------------------------------------- CLI

def _app() -> typer.Typer:
    app = typer.Typer()
    register(app)
    return app


@pytest.mark.parametrize("cmd", ["pix2pix-train", "pix2pix-generate"])
def test_cli_help(cmd):
    res = CliRunner().invoke(_app(), [cmd, "--help"])
    assert res.exit_code == 0, res.output
    assert "--out" in res.output and "--seed" in res.output


def test_cli_help_via_lgenode():
    from pipeline.cli import app

    names = {c.name for c in app.registered_commands}
    assert {"pix2pix-train", "pix2pix-generate"} <= names, sorted(names)
    res = CliRunner().invoke(app, ["pix2pix-train", "--help"])
    assert res.exit_code == 0 and "--exclude-fold" in res.output


@pytest.mark.tf
def test_cli_train_and_generate(data_and_folds, tmp_path):
    data, folds = data_and_folds
    runner = CliRunner()
    res = runner.invoke(_app(), ["pix2pix-train", "--out", str(tmp_path / "g"), "--data-dir", str(data),
                                 "--folds", str(folds), "--exclude-fold", "0", "--epochs", "1",
                                 "--steps-per-epoch", "1", "--batch-size", "2", "--base-filters", "4",
                                 "--depth", "3", "--disc-filters", "4", "--quiet"])
    assert res.exit_code == 0, res.output
    res = runner.invoke(_app(), ["pix2pix-train", "--out", str(tmp_path / "g"), "--data-dir", str(data),
                                 "--quiet"])
    assert res.exit_code == 2  # existing run without --resume
    np.savez(tmp_path / "m.npz", masks=_toy_pairs(3).masks)
    res = runner.invoke(_app(), ["pix2pix-generate", "--generator", str(tmp_path / "g"), "--masks",
                                 str(tmp_path / "m.npz"), "--out", str(tmp_path / "o"), "--quiet"])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "o" / "pairs.npz").is_file()


# ---------------------------------------------------------------------------------- shared data

def test_real_emidec_pairs_follow_the_roi_contract(emidec_root):
    from pipeline.datasets import emidec

    cid = next(c for c in emidec.list_cases(emidec_root) if c.startswith("Case_P"))
    pairs = P.load_pairs([cid], str(emidec_root), progress=False)
    assert pairs.images.shape[1:] == (128, 128) and pairs.masks.shape == pairs.images.shape
    assert pairs.images.dtype == np.float32 and 0.0 <= pairs.images.min() and pairs.images.max() <= 1.5
    assert pairs.lesion.size > 0 and set(pairs.case_ids) == {cid}
