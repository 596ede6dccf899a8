"""GAN run folder: checkpoints restore weights, optimizer step, history and random generators; the
epoch loop; JSON and gan.json helpers; figures."""

from __future__ import annotations

import json

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from keras import ops  # noqa: E402

from pipeline.synth import gan_run as R  # noqa: E402
from pipeline.synth.gan_figures import Column, Panel, image_grid, plot_history  # noqa: E402
from pipeline.synth.gan_steps import Step, Update, make_steps  # noqa: E402
from tests.pipeline.synth.test_gan_steps import joint_objective, tiny_batch, tiny_nets  # noqa: E402

LAYOUTS = {
    "keras files": R.CheckpointLayout(nets={"gen": "gen.keras", "disc": "disc.keras"},
                                      optimizers={"g": ("g_opt.npz", "arr_{i}"), "d": ("d_opt.npz", "arr_{i}")},
                                      state="state.json"),
    "weights files": R.CheckpointLayout(nets={"gen": "gen.weights.h5", "disc": "disc.weights.h5"},
                                        optimizers={"g": ("state.npz", "g_{i:04d}"), "d": ("state.npz", "d_{i:04d}")},
                                        state="checkpoint.json"),
}


def _np(x) -> np.ndarray:
    return np.asarray(ops.convert_to_numpy(x))


def _trainer():  # type: ignore[no-untyped-def]
    nets = tiny_nets(dropout=0.5)
    opts = {"g": keras.optimizers.Adam(1e-2), "d": keras.optimizers.Adam(1e-2)}
    steps = make_steps(nets, {"joint": Step(joint_objective, (Update("g_loss", ("gen",), opts["g"]),
                                                              Update("d_loss", ("disc",), opts["d"])))})
    return nets, opts, steps


@pytest.mark.tf
@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_resume_restores_weights_step_history_and_random_generators(tmp_path, layout):
    cond, real = tiny_batch()
    nets, opts, steps = _trainer()
    for _ in range(3):
        steps("joint", cond, real)
    host_rng = np.random.default_rng(7)
    host_rng.random(5)
    history = [{"epoch": 1, "l1": 0.5}, {"epoch": 2, "l1": 0.4}]
    ckpt = R.Checkpoint(tmp_path, LAYOUTS[layout], nets, opts, steps)
    assert not ckpt.exists()
    ckpt.save(2, {"history": history, "rng": host_rng.bit_generator.state}, {"extra.npz": {"pool": np.ones((2, 3))}})
    assert ckpt.exists() and not list(tmp_path.glob("*.tmp*"))
    # what the uninterrupted run does next
    expected_next = steps("joint", cond, real)[0]
    expected_draw = host_rng.random(3)

    keras.utils.set_random_seed(123)  # a fresh process would start its generators elsewhere
    nets2, opts2, steps2 = _trainer()
    epoch, state, arrays = R.Checkpoint(tmp_path, LAYOUTS[layout], nets2, opts2, steps2).restore()
    assert epoch == 2 and state["history"] == history
    np.testing.assert_array_equal(arrays["extra.npz"]["pool"], np.ones((2, 3)))
    assert [int(_np(o.iterations)) for o in opts2.values()] == [3, 3]
    rng2 = np.random.default_rng(0)
    rng2.bit_generator.state = state["rng"]
    np.testing.assert_array_equal(rng2.random(3), expected_draw)
    # same weights, optimizer moments and dropout masks: the next step is the same step
    got_next = steps2("joint", cond, real)[0]
    for k in expected_next:
        assert got_next[k] == pytest.approx(expected_next[k], rel=1e-5), k


@pytest.mark.tf
def test_restore_refuses_an_optimizer_of_another_shape(tmp_path):
    nets, opts, steps = _trainer()
    layout = LAYOUTS["keras files"]
    R.Checkpoint(tmp_path, layout, nets, opts, steps).save(1)
    np.savez(tmp_path / "g_opt.npz", arr_0=np.zeros(1))
    with pytest.raises(ValueError, match="optimizer g"):
        R.Checkpoint(tmp_path, layout, *_trainer()).restore()
    with pytest.raises(ValueError, match="every net"):
        R.Checkpoint(tmp_path, layout, {"gen": nets["gen"]}, opts)


@pytest.mark.tf
def test_a_checkpoint_without_random_generator_states_still_restores(tmp_path):
    """Runs written before the generators were saved resume with freshly seeded ones."""
    nets, opts, steps = _trainer()
    layout = LAYOUTS["weights files"]
    R.Checkpoint(tmp_path, layout, nets, opts, steps).save(4, {"pool_rng": None})
    (tmp_path / layout.rng).unlink()
    nets2, opts2, steps2 = _trainer()
    epoch, state, arrays = R.Checkpoint(tmp_path, layout, nets2, opts2, steps2).restore()
    assert epoch == 4 and set(arrays) == {"state.npz"}
    for w1, w2 in zip(nets["disc"].get_weights(), nets2["disc"].get_weights()):
        np.testing.assert_array_equal(w1, w2)


def test_check_resumable_names_the_changed_settings():
    R.check_resumable({"a": 1, "b": 2}, {"a": 1, "b": 2, "epochs": 9}, ("a", "b"))
    with pytest.raises(ValueError, match="b"):
        R.check_resumable({"a": 1, "b": 2}, {"a": 1, "b": 3}, ("a", "b"))


def test_train_epochs_averages_losses_and_hands_over_each_epoch():
    calls, entries = [], []

    def step(epoch: int, index: int) -> dict[str, float]:
        calls.append((epoch, index))
        return {"loss": float(epoch * 10 + index)}

    R.train_epochs(step, 2, 3, 2, lambda epoch: {"val": -epoch}, entries.append, progress=False)
    assert calls == [(2, 0), (2, 1), (3, 0), (3, 1)]
    assert [(e["epoch"], e["loss"], e["val"]) for e in entries] == [(2, 20.5, -2), (3, 30.5, -3)]
    assert all(e["ms_per_step"] >= 0 and e["seconds"] >= 0 for e in entries)
    with pytest.raises(FloatingPointError, match="epoch 1 step 0"):
        R.train_epochs(lambda e, i: {"loss": float("nan")}, 1, 1, 2, lambda e: {}, entries.append, progress=False)
    assert len(entries) == 2  # nothing handed over for the failed epoch


def test_json_and_gan_json(tmp_path):
    R.write_json(tmp_path / "gan.json", {"kind": "pix2pix", "n": np.int64(3), "x": np.float32(0.5),
                                         "a": np.arange(2)})
    assert json.loads((tmp_path / "gan.json").read_text()) == {"kind": "pix2pix", "n": 3, "x": 0.5, "a": [0, 1]}
    assert R.read_gan_json(tmp_path, "pix2pix")["n"] == 3
    with pytest.raises(ValueError, match="not cyclegan"):
        R.read_gan_json(tmp_path, "cyclegan")
    assert R.read_gan_json(tmp_path / "none", "pix2pix", required=False) == {}
    with pytest.raises(FileNotFoundError):
        R.read_gan_json(tmp_path / "none", "pix2pix")
    v = R.versions()
    assert v["backend"] == keras.backend.backend() and v["keras"] == keras.__version__


def test_run_generator_maps_tanh_output_to_unit_range():
    model = keras.Sequential([keras.Input((4, 4, 1)), keras.layers.Activation("tanh")])
    x = np.linspace(-3, 3, 5 * 16).reshape(5, 4, 4).astype(np.float32)
    y = R.run_generator(model, x, lambda b: b[..., None], batch_size=2)
    np.testing.assert_allclose(y, (np.tanh(x) + 1) / 2, atol=1e-6)
    assert R.run_generator(model, x[:0], lambda b: b[..., None]).shape == (0, 4, 4)
    np.testing.assert_array_equal(R.in_batches(lambda b: b * 2, x, 2, False, "x"), x * 2)


def test_figures_are_written(tmp_path):
    hist = [{"epoch": e, "a": 1.0 / e, "b": 2.0, "c": 0.5 * e} for e in (1, 2, 3)]
    plot_history(hist, tmp_path / "curves.png", [Panel("a/b", ("a", "b", "missing")), Panel("c", (), right=("c",))])
    masks = np.zeros((3, 8, 8), np.uint8)
    masks[:, 2:5, 2:5] = 2
    image_grid([Column("mask", masks, labels=True), Column("image", np.ones((3, 8, 8)), contours=masks)],
               tmp_path / "grid.png", ["r1", "r2", "r3"], title="t")
    from PIL import Image

    with Image.open(tmp_path / "curves.png") as im:
        assert im.size[0] > im.size[1]
    with Image.open(tmp_path / "grid.png") as im:
        assert im.size[1] > im.size[0]  # three rows of two columns
