"""CycleGAN cine -> LGE: losses, pool, batches, schedule, learning, resume, generation, CLI
(tiny nets, synthetic slices / synthetic MyoPS-like NIfTI in tmp dirs)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

keras = pytest.importorskip("keras")

from pipeline.synth import cine_slices as cs
from pipeline.synth import cyclegan as CG
from pipeline.synth.cyclegan_commands import register
from tests.pipeline.synth.test_cine_slices import write_myops_cine

TINY = {"generator": "unet", "base_filters": 4, "unet_depth": 3, "disc_filters": 4, "disc_layers": 2,
        "crop_size": 32, "jitter": 2, "batch_size": 2, "pool_size": 4, "steps_per_epoch": 2, "epochs": 2,
        "hold_out": []}


def _np(x) -> np.ndarray:
    return np.asarray(keras.ops.convert_to_numpy(x))


def tiny_slices(n_cases: int = 3, n_slices: int = 2, size: int = 128, seed: int = 0) -> cs.CineLgeSlices:
    """Rings: cine = bright cavity + grey wall, LGE = bright cavity + dark wall with a bright sector."""
    rng = np.random.default_rng(seed)
    rr, cc = np.mgrid[0:size, 0:size].astype(float)
    cine, lge, masks, ids, idx = [], [], [], [], []
    for c in range(n_cases):
        for k in range(n_slices):
            d = np.hypot(rr - 64 + rng.uniform(-3, 3), cc - 64 + rng.uniform(-3, 3))
            cav, wall = d < 16 - 2 * k, (d >= 16 - 2 * k) & (d < 24 - 2 * k)
            scar = wall & (rr < 64 - 10)
            m = np.zeros((size, size), np.uint8)
            m[cav], m[wall], m[scar] = 1, 2, 3
            ci = 0.3 + 0.6 * cav + 0.2 * wall + rng.normal(0, 0.02, d.shape)
            li = 0.35 + 0.6 * cav - 0.3 * wall + 0.8 * scar + rng.normal(0, 0.02, d.shape)
            cine.append(np.clip(ci, 0, 1.5))
            lge.append(np.clip(li, 0, 1.5))
            masks.append(m)
            ids.append(f"Case{3001 + c}")
            idx.append(k)
    return cs.CineLgeSlices(np.stack(cine).astype(np.float32), np.stack(lge).astype(np.float32), np.stack(masks),
                            np.ones(len(ids), bool), ids, np.asarray(idx),
                            {f"Case{3001 + c}": "mask" for c in range(n_cases)})


# ---------------------------------------------------------------------------------- losses

def test_lsgan_and_l1_values():
    pred = np.array([[0.5, 1.5]], np.float32)
    assert float(_np(CG.lsgan(pred, 1.0))) == pytest.approx(0.25)
    assert float(_np(CG.lsgan(pred, 0.0))) == pytest.approx((0.25 + 2.25) / 2)
    assert float(_np(CG.l1(pred, np.zeros_like(pred)))) == pytest.approx(1.0)


def test_cycle_losses_of_perfect_and_fooled_nets():
    x = np.random.default_rng(0).uniform(-1, 1, (2, 8, 8, 1)).astype(np.float32)
    y = np.random.default_rng(1).uniform(-1, 1, (2, 8, 8, 1)).astype(np.float32)
    ident = lambda t: t
    ones = lambda t: keras.ops.ones((t.shape[0], 2, 2, 1))
    zeros = lambda t: keras.ops.zeros((t.shape[0], 2, 2, 1))
    total, _, _, fake_b = CG.cycle_losses(ident, ident, ones, ones, x, y, 10.0, 0.5)
    assert float(_np(total)) == pytest.approx(0.0, abs=1e-7)
    np.testing.assert_allclose(_np(fake_b), x)
    # discriminators that see through the fakes: adversarial 1 per domain; the identity term is weighted 0.5*10
    neg = lambda t: -t
    total, parts, _, _ = CG.cycle_losses(ident, neg, zeros, zeros, x, y, 10.0, 0.5)
    cyc = np.abs(-x - x).mean() + np.abs(-y - y).mean()
    idt = 0.0 + np.abs(-x - x).mean()
    assert float(_np(parts["g_adv"])) == pytest.approx(2.0)
    assert float(_np(parts["cycle"])) == pytest.approx(cyc, rel=1e-5)
    assert float(_np(parts["identity"])) == pytest.approx(idt, rel=1e-5)
    assert float(_np(total)) == pytest.approx(2.0 + 10 * cyc + 5 * idt, rel=1e-5)
    d_total, d_parts = CG.discriminator_losses(ones, zeros, x, y, x, y)
    assert float(_np(d_parts["d_cine"])) == pytest.approx(0.5)  # real right, fake called real
    assert float(_np(d_parts["d_lge"])) == pytest.approx(0.5)  # real called fake, fake right
    assert float(_np(d_total)) == pytest.approx(1.0)


def test_learning_rate_constant_then_linear_to_zero():
    s = CG.ConstantThenLinearDecay(2e-4, decay_start=10, total_steps=20)
    got = [float(_np(s(t))) for t in (0, 10, 15, 20, 30)]
    np.testing.assert_allclose(got, [2e-4, 2e-4, 1e-4, 0.0, 0.0], atol=1e-9)


# ---------------------------------------------------------------------------------- data

def test_image_pool_mixes_history_and_keeps_its_size():
    pool = CG.ImagePool(3, seed=0)
    first = np.arange(3, dtype=np.float32)[:, None, None, None] * np.ones((3, 2, 2, 1), np.float32)
    np.testing.assert_array_equal(pool.query(first), first)  # filling: returned as given
    seen_old = False
    for step in range(20):
        new = np.full((2, 2, 2, 1), 100.0 + step, np.float32)
        out = pool.query(new)
        assert len(pool.images) == 3 and out.shape == new.shape
        vals = out[:, 0, 0, 0]
        assert all(v == 100.0 + step or v < 100.0 + step for v in vals)
        seen_old |= bool((vals < 100.0 + step).any())
    assert seen_old  # about half the queries return a stored (older) fake
    np.testing.assert_array_equal(CG.ImagePool(0).query(new), new)


def test_sampler_is_deterministic_unpaired_and_in_gan_range():
    d = tiny_slices()
    cfg = CG.CycleGANConfig(**{**TINY, "batch_size": 3})
    s = CG.UnpairedSampler(d.cine, d.lge, cfg)
    a1, b1 = s.batch(1, 0)
    a2, b2 = s.batch(1, 0)
    np.testing.assert_array_equal(a1, a2)
    np.testing.assert_array_equal(b1, b2)
    assert a1.shape == b1.shape == (3, 32, 32, 1) and a1.dtype == np.float32
    assert a1.min() >= -1 and a1.max() <= 1
    assert not np.array_equal(s.batch(1, 1)[0], a1)


# ---------------------------------------------------------------------------------- training

@pytest.mark.tf
def test_training_steps_reduce_the_cycle_loss_on_a_fixed_batch():
    d = tiny_slices()
    cfg = CG.CycleGANConfig(**{**TINY, "learning_rate": 1e-3, "epochs": 1, "steps_per_epoch": 40})
    m = CG.CycleGAN(cfg)
    a, b = CG.UnpairedSampler(d.cine, d.lge, cfg).batch(0, 0)

    def cycle() -> float:
        m.sync()  # JAX trains on functional state; the Keras variables are updated here
        _, parts, _, _ = CG.cycle_losses(m.G, m.F, m.D_A, m.D_B, a, b, 10.0, 0.5)
        return float(_np(parts["cycle"]))

    before = cycle()
    logs = [m.train_step(a, b) for _ in range(25)]
    assert all(np.isfinite(v) for e in logs for v in e.values())
    assert cycle() < 0.7 * before


@pytest.mark.tf
def test_train_writes_the_run_folder_and_resume_continues(tmp_path):
    d = tiny_slices()
    cfg = CG.CycleGANConfig(**{**TINY, "hold_out": ["Case3003"]})
    straight = tmp_path / "straight"
    CG.train(cfg, straight, slices=d, progress=False)
    for f in ("generator.keras", "gan.json", "history.json", "curves.png", "samples.png", "MODEL_CARD.md",
              "generator_lge2cine.keras", "checkpoints/checkpoint.json"):
        assert (straight / f).exists(), f
    meta = json.loads((straight / "gan.json").read_text())
    assert meta["kind"] == "cyclegan" and meta["held_out_cases"] == ["Case3003"]
    assert "Case3003" not in meta["train_cases"] and meta["status"] == "done"
    hist = json.loads((straight / "history.json").read_text())["epochs"]
    assert [e["epoch"] for e in hist] == [1, 2]
    assert all(k in hist[-1] for k in ("d_loss", "g_adv", "cycle", "identity", "ms_per_step", "val_psnr", "val_ssim"))

    # interrupted after epoch 1, then resumed to epoch 2: same weights as the uninterrupted run
    part = tmp_path / "part"
    CG.train(CG.CycleGANConfig(**{**TINY, "hold_out": ["Case3003"], "epochs": 1}), part, slices=d, progress=False)
    resumed = CG.resume_config(part, {"epochs": 2})
    assert resumed.epochs == 2 and resumed.hold_out == ["Case3003"]
    with pytest.raises(ValueError, match="base_filters"):
        CG.resume_config(part, {"base_filters": 8})
    # the learning-rate schedule depends on the total; the straight run used epochs=2 from the start
    CG.train(resumed, part, slices=d, resume=True, progress=False)
    hist2 = json.loads((part / "history.json").read_text())["epochs"]
    assert [e["epoch"] for e in hist2] == [1, 2]
    for k in CG.LOSS_KEYS:  # the first epochs were the same computation
        assert hist2[0][k] == pytest.approx(hist[0][k], rel=1e-4)
    g1 = keras.saving.load_model(straight / "generator.keras", compile=False).get_weights()
    g2 = keras.saving.load_model(part / "generator.keras", compile=False).get_weights()
    for w1, w2 in zip(g1, g2):
        np.testing.assert_allclose(w1, w2, atol=1e-5)

    fn = CG.load_generator(straight)
    out = fn(d.cine[:3])
    assert out.shape == (3, 128, 128) and out.dtype == np.float32
    assert out.min() >= 0 and out.max() <= 1.5
    with pytest.raises(ValueError):
        fn(d.cine[:3, :64, :64])


# ---------------------------------------------------------------------------------- CLI + generate

def _app() -> typer.Typer:
    app = typer.Typer()
    register(app)
    return app


def test_cli_help_lists_the_options():
    runner = CliRunner(env={"COLUMNS": "200", "TERMINAL_WIDTH": "200"})  # rich would elide long option names
    r = runner.invoke(_app(), ["cyclegan-train", "--help"])
    assert r.exit_code == 0, r.output
    for opt in ("--out", "--data-dir", "--epochs", "--steps-per-epoch", "--batch-size", "--base-filters",
                "--seed", "--resume", "--hold-out"):
        assert opt in r.output
    r = runner.invoke(_app(), ["cyclegan-generate", "--help"])
    assert r.exit_code == 0, r.output
    for opt in ("--generator", "--out", "--held-out", "--include-unlabelled"):
        assert opt in r.output


@pytest.mark.tf
def test_cli_train_then_generate_carries_the_gd_masks(tmp_path):
    root = write_myops_cine(tmp_path / "data", n_labelled=3, n_unlabelled=1)
    run = tmp_path / "run"
    runner = CliRunner()
    r = runner.invoke(_app(), ["cyclegan-train", "--out", str(run), "--data-dir", str(root), "--epochs", "1",
                               "--steps-per-epoch", "2", "--batch-size", "2", "--base-filters", "4",
                               "--crop-size", "32", "--hold-out", "Case3003", "--quiet"])
    assert r.exit_code == 0, r.output
    assert json.loads((run / "gan.json").read_text())["train_labelled_cases"] == ["Case3001", "Case3002"]

    out = tmp_path / "pairs"
    r = runner.invoke(_app(), ["cyclegan-generate", "--generator", str(run), "--out", str(out),
                               "--data-dir", str(root), "--include-unlabelled", "--quiet"])
    assert r.exit_code == 0, r.output
    ref = cs.load_slices(root, include_unlabelled=False, only_cases=["Case3001", "Case3002"])
    with np.load(out / "pairs.npz") as z:
        assert z["images"].shape == z["masks"].shape == (len(ref), 128, 128)
        assert z["images"].dtype == np.float32 and z["masks"].dtype == np.uint8
        np.testing.assert_array_equal(z["masks"], ref.masks)
        assert z["images"].min() >= 0 and z["images"].max() <= 1.5
    info = json.loads((out / "pairs.json").read_text())
    assert info["split"] == "train" and info["cases"] == ["Case3001", "Case3002"]
    assert (out / "pairs.png").exists() and np.load(out / "unlabelled.npz")["images"].shape[0] == 3

    held = tmp_path / "held"
    r = runner.invoke(_app(), ["cyclegan-generate", "--generator", str(run), "--out", str(held),
                               "--data-dir", str(root), "--held-out", "--quiet"])
    assert r.exit_code == 0, r.output
    ref = cs.load_slices(root, include_unlabelled=False, only_cases=["Case3003"])
    with np.load(held / "pairs.npz") as z:
        np.testing.assert_array_equal(z["masks"], ref.masks)
        assert z["real"].shape == z["images"].shape
    assert "psnr_mean" in json.loads((held / "pairs.json").read_text())["paired_fake_vs_real"]
