"""GAN update steps: each backend lowers the losses of a tiny GAN, and TensorFlow and JAX compute the
same steps (JAX runs in a subprocess: a process has one Keras backend)."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from keras import ops  # noqa: E402

from pipeline.synth.gan_steps import Step, Update, make_steps  # noqa: E402

ROOT = Path(__file__).resolve().parents[3]
BACKENDS = ("tensorflow", "jax")


def tiny_nets(dropout: float = 0.0) -> dict[str, Any]:
    """A 2-channel -> 1-channel conv generator and a conv discriminator with batch norm, weights
    drawn by numpy so that every backend starts from the same ones."""
    x = keras.Input((8, 8, 2))
    h = keras.layers.Conv2D(4, 3, padding="same", activation="relu")(x)
    if dropout:
        h = keras.layers.Dropout(dropout, seed=1)(h)
    gen = keras.Model(x, keras.layers.Conv2D(1, 3, padding="same", activation="tanh")(h), name="gen")
    y = keras.Input((8, 8, 1))
    # no bias before batch norm: its gradient is zero up to rounding, which Adam would blow up
    h = keras.layers.Conv2D(4, 3, strides=2, padding="same", use_bias=False)(y)
    h = keras.layers.BatchNormalization(momentum=0.5)(h)
    disc = keras.Model(y, keras.layers.Conv2D(1, 3, padding="same")(keras.layers.LeakyReLU(0.2)(h)), name="disc")
    rng = np.random.default_rng(0)
    for net in (gen, disc):
        net.set_weights([rng.normal(0, 0.3, w.shape).astype(np.float32) if w.ndim > 1 else w
                         for w in net.get_weights()])
    return {"gen": gen, "disc": disc}


def tiny_batch() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(1)
    cond = rng.normal(0, 1, (4, 8, 8, 2)).astype(np.float32)
    return cond, np.tanh(cond[..., :1] - 0.5 * cond[..., 1:])  # a target the generator can learn


def joint_objective(call, cond, real):  # type: ignore[no-untyped-def]
    """pix2pix-like: both nets from one forward pass (LSGAN + 10 x L1)."""
    fake = call("gen", cond)
    d_real, d_fake = call("disc", real), call("disc", fake)
    l1 = ops.mean(ops.abs(fake - real))
    return {"g_loss": ops.mean(ops.square(d_fake - 1.0)) + 10.0 * l1, "l1": l1,
            "d_loss": ops.mean(ops.square(d_real - 1.0)) + ops.mean(ops.square(d_fake))}, (fake,)


def disc_objective(call, real, fake):  # type: ignore[no-untyped-def]
    """CycleGAN-like second step: the discriminator alone, on host-side fakes."""
    return {"d_only": ops.mean(ops.square(call("disc", real) - 1.0)) + ops.mean(ops.square(call("disc", fake)))}, ()


def tiny_problem(n_steps: int = 20) -> dict[str, Any]:
    """Alternate a joint step and a discriminator-only step; returns the losses per step and the end state."""
    nets = tiny_nets()
    opt_g, opt_d = keras.optimizers.Adam(1e-2), keras.optimizers.Adam(1e-2)
    steps = make_steps(nets, {
        "joint": Step(joint_objective, (Update("g_loss", ("gen",), opt_g), Update("d_loss", ("disc",), opt_d))),
        "disc": Step(disc_objective, (Update("d_only", ("disc",), opt_d),)),
    })
    cond, real = tiny_batch()
    out: dict[str, Any] = {"l1": [], "d_loss": [], "d_only": []}
    for _ in range(n_steps):
        logs, (fake,) = steps("joint", cond, real)
        assert fake.shape == real.shape and isinstance(fake, np.ndarray)
        d_logs, _ = steps("disc", real, fake)
        for k, v in {**logs, **d_logs}.items():
            if k in out:
                out[k].append(v)
    steps.sync()
    out["iterations"] = [int(ops.convert_to_numpy(o.iterations)) for o in (opt_g, opt_d)]
    out["moving_mean"] = np.asarray(ops.convert_to_numpy(nets["disc"].non_trainable_variables[0])).tolist()
    out["gen_kernel_sum"] = float(np.sum(nets["gen"].get_weights()[0]))
    return out


def run_on(backend: str) -> dict[str, Any]:
    if backend == keras.backend.backend():
        return tiny_problem()
    if importlib.util.find_spec(backend) is None:
        pytest.skip(f"{backend} is not installed")
    env = {**os.environ, "KERAS_BACKEND": backend,
           "PYTHONPATH": os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])}
    code = "import json; from tests.pipeline.synth.test_gan_steps import tiny_problem; print(json.dumps(tiny_problem()))"
    res = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    return dict(json.loads(res.stdout.strip().splitlines()[-1]))


@pytest.mark.tf
@pytest.mark.parametrize("backend", BACKENDS)
def test_each_backend_lowers_the_losses_of_a_tiny_gan(backend):
    r = run_on(backend)
    assert np.isfinite(r["l1"]).all() and np.isfinite(r["d_only"]).all()
    assert np.mean(r["l1"][-3:]) < 0.6 * np.mean(r["l1"][:3])
    assert np.mean(r["d_only"][-3:]) < np.mean(r["d_only"][:3])
    assert r["iterations"] == [20, 40]  # opt_d: one update in each of the two steps
    assert any(abs(m) > 1e-6 for m in r["moving_mean"])  # batch-norm statistics are carried along


@pytest.mark.tf
def test_tensorflow_and_jax_take_the_same_steps():
    if importlib.util.find_spec("jax") is None:
        pytest.skip("jax is not installed")
    tf_run, jax_run = run_on("tensorflow"), run_on("jax")
    for key in ("l1", "d_loss", "d_only"):
        np.testing.assert_allclose(jax_run[key][:5], tf_run[key][:5], rtol=1e-3, err_msg=key)
    np.testing.assert_allclose(jax_run["moving_mean"], tf_run["moving_mean"], rtol=1e-2, atol=1e-3)


def test_a_net_trained_by_two_updates_of_one_step_is_refused():
    nets = tiny_nets()
    opt = keras.optimizers.Adam()
    with pytest.raises(ValueError, match="own known nets"):
        make_steps(nets, {"x": Step(joint_objective, (Update("g_loss", ("gen",), opt),
                                                      Update("d_loss", ("gen",), keras.optimizers.Adam())))})
    with pytest.raises(ValueError):
        make_steps(nets, {"x": Step(joint_objective, (Update("g_loss", ("nope",), opt),))})
