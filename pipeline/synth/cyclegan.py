"""CycleGAN cine (bSSFP) -> LGE on 128x128 LV-centred ROI slices (Zhu et al. 2017), Keras 3.

Domains: A = cine (MyoPS ``_C0``), B = LGE. Nets: ``G`` A->B (the product, ``generator.keras``),
``F`` B->A, ``D_B`` judges LGE, ``D_A`` judges cine (PatchGANs of ``gan_layers`` with instance norm).
Losses, as in the paper and its reference code:

* adversarial: least squares (LSGAN), ``mean((D(fake) - 1)^2)`` for the generators and
  ``0.5 * (mean((D(real) - 1)^2) + mean(D(fake)^2))`` per discriminator;
* cycle: ``lambda_cycle * (|F(G(a)) - a|_1 + |G(F(b)) - b|_1)``, lambda_cycle = 10;
* identity: ``identity_weight * lambda_cycle * (|G(b) - b|_1 + |F(a) - a|_1)``, 0.5 * 10; it keeps
  the overall intensity mapping from drifting (the colour-preservation trick of the paper);
* Adam lr 2e-4, beta_1 0.5, one optimizer for G+F and one for D_A+D_B; the learning rate is
  constant for the first ``decay_from`` fraction of the steps and then falls linearly to 0.
* **Image pool** (Shrivastava et al. 2017, used by CycleGAN): the discriminators see, half the
  time, a fake from an earlier step (up to ``pool_size`` stored per domain) instead of the newest
  one, so they do not chase only the generators' current mode. ``pool_size`` 0 turns it off. It
  is host-side numpy (``ImagePool``) and saved in the checkpoints, so a resumed run continues it.

Generator: ``"unet"`` (default) is ``gan_layers.build_unet_generator(norm="instance")``: its skip
connections keep the anatomy in place, which matters because the cine masks are carried over to
the fake LGE, and on CPU it is 3-4x faster than the ResNet (measured, see ``CycleGANConfig``).
``"resnet"`` is the CycleGAN paper's 128x128 net: 7x7 conv, two stride-2
downsamplings, ``n_res_blocks`` residual blocks, two upsamplings, 7x7 conv, tanh) with bilinear
upsampling + conv instead of transposed convolutions (no checkerboard artefacts), zero instead of
reflection padding (stock layers only, so the ``.keras`` file loads without custom objects), and
instance norm (``GroupNormalization`` with one group per channel). It is fully convolutional, so
it can train on random crops (``crop_size`` < 128, cheaper on CPU) and still run on 128x128 ROIs;
the U-Net has a fixed input size, so it trains at ``crop_size`` and is rebuilt at 128x128 with the
same weights for export (every layer is size-independent). No net has
non-trainable state (instance norm only), which keeps the JAX step simple.

Images: normalised ROI slices (``pp.normalize_intensity``, about [0, 1]) go into the nets as
``gan_layers.to_gan_range`` (2*clip(x, 0, 1) - 1) and come back through ``from_gan_range``;
``load_generator`` then normalises each output image with ``pp.normalize_intensity`` (the
segmenter-input convention of the synthetic-data contract).

Backends: the update steps are written twice, ``_TFSteps`` (``tf.GradientTape``, ``tf.function``)
and ``_JaxSteps`` (``stateless_call`` + ``jax.value_and_grad`` + ``optimizer.stateless_apply``,
``jax.jit``), chosen by ``keras.backend.backend()``; the losses (``cycle_losses``,
``discriminator_losses``) are written once with ``keras.ops``.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import keras
import numpy as np
from keras import layers, ops

import models.preprocess as pp
from pipeline.synth.cine_slices import DEFAULT_HOLD_OUT, normalise_each
from pipeline.synth.gan_layers import (
    build_patch_discriminator,
    build_unet_generator,
    from_gan_range,
    to_gan_range,
)

log = logging.getLogger(__name__)

KIND = "cyclegan"
ROI = pp.ROI_SIZE
# Saved nets: the product first; the others are small and kept so a finished run can be extended.
NET_FILES: dict[str, str] = {
    "G": "generator.keras",  # cine -> LGE
    "F": "generator_lge2cine.keras",
    "D_B": "discriminator_lge.keras",
    "D_A": "discriminator_cine.keras",
}
GENERATORS = ("resnet", "unet")


@dataclass
class CycleGANConfig:
    # Defaults sized for ~15-20 min on 2 shared CPU cores (TF): U-Net base 16 on 96 px crops,
    # batch 8, measured ~370 ms/step at load ~7 -> 2400 steps; the ResNet generator is 3-4x slower.
    epochs: int = 40
    steps_per_epoch: int = 60
    batch_size: int = 8
    generator: str = "unet"
    base_filters: int = 16
    n_res_blocks: int = 6  # resnet generator
    unet_depth: int = 5  # unet generator
    disc_filters: int = 16
    disc_layers: int = 3
    lambda_cycle: float = 10.0
    identity_weight: float = 0.5  # identity loss weight = identity_weight * lambda_cycle
    learning_rate: float = 2e-4
    beta_1: float = 0.5
    decay_from: float = 0.5  # fraction of all steps after which the learning rate decays linearly to 0
    pool_size: int = 50
    crop_size: int = 96  # random training crops of the 128x128 ROI (fully convolutional nets)
    jitter: int = 8  # extra random shift (px, zero padding) before cropping
    flip: bool = True
    seed: int = 0
    hold_out: list[str] = field(default_factory=lambda: list(DEFAULT_HOLD_OUT))
    exclude_cases: list[str] = field(default_factory=list)
    include_unlabelled: bool = True
    unlabelled_centre: str = "heuristic"

    @property
    def total_steps(self) -> int:
        return self.epochs * self.steps_per_epoch

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CycleGANConfig:
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})


# --------------------------------------------------------------------------------------------
# Networks
# --------------------------------------------------------------------------------------------
def _init() -> keras.initializers.Initializer:
    return keras.initializers.RandomNormal(mean=0.0, stddev=0.02)


def _conv_in_relu(x, filters: int, kernel: int, name: str, strides: int = 1, relu: bool = True):  # type: ignore[no-untyped-def]
    x = layers.Conv2D(filters, kernel, strides=strides, padding="same", use_bias=False,
                      kernel_initializer=_init(), name=f"{name}_conv")(x)
    x = layers.GroupNormalization(groups=-1, epsilon=1e-5, name=f"{name}_in")(x)
    return layers.ReLU(name=f"{name}_relu")(x) if relu else x


def build_resnet_generator(base_filters: int = 16, n_res_blocks: int = 6, name: str = "generator",
                           size: int | None = None) -> keras.Model:
    """(size, size, 1) -> (size, size, 1) tanh; ``size`` None accepts any multiple of 4."""
    b = base_filters
    inputs = keras.Input(shape=(size, size, 1), name="image")
    x = _conv_in_relu(inputs, b, 7, f"{name}_c7")
    x = _conv_in_relu(x, 2 * b, 3, f"{name}_d1", strides=2)
    x = _conv_in_relu(x, 4 * b, 3, f"{name}_d2", strides=2)
    for i in range(n_res_blocks):
        y = _conv_in_relu(x, 4 * b, 3, f"{name}_r{i}a")
        y = _conv_in_relu(y, 4 * b, 3, f"{name}_r{i}b", relu=False)
        x = layers.Add(name=f"{name}_r{i}_add")([x, y])
    for i, f in enumerate((2 * b, b)):
        x = layers.UpSampling2D(2, interpolation="bilinear", name=f"{name}_u{i}_up")(x)
        x = _conv_in_relu(x, f, 3, f"{name}_u{i}")
    x = layers.Conv2D(1, 7, padding="same", kernel_initializer=_init(), name=f"{name}_out_conv")(x)
    out = layers.Activation("tanh", dtype="float32", name=f"{name}_tanh")(x)
    return keras.Model(inputs, out, name=name)


def build_generator(cfg: CycleGANConfig, name: str, size: int | None = None) -> keras.Model:
    if cfg.generator == "resnet":
        return build_resnet_generator(cfg.base_filters, cfg.n_res_blocks, name=name, size=size)
    if cfg.generator == "unet":
        return build_unet_generator(1, 1, cfg.base_filters, cfg.unet_depth, norm="instance", name=name,
                                    size=size or ROI)
    raise ValueError(f"generator must be one of {GENERATORS}, got {cfg.generator!r}")


def build_discriminator(cfg: CycleGANConfig, name: str) -> keras.Model:
    return build_patch_discriminator(1, cfg.disc_filters, cfg.disc_layers, norm="instance", name=name,
                                     size=cfg.crop_size)


# --------------------------------------------------------------------------------------------
# Losses (keras.ops: both backends)
# --------------------------------------------------------------------------------------------
Net = Callable[[Any], Any]


def lsgan(pred: Any, target: float) -> Any:
    return ops.mean(ops.square(pred - target))


def l1(a: Any, b: Any) -> Any:
    return ops.mean(ops.abs(a - b))


def cycle_losses(g: Net, f: Net, d_a: Net, d_b: Net, real_a: Any, real_b: Any,
                 lambda_cycle: float, identity_weight: float) -> tuple[Any, dict[str, Any], Any, Any]:
    """Generator objective: (total, parts, fake_a, fake_b); g: A->B, f: B->A, d_a judges A, d_b judges B."""
    fake_b = g(real_a)
    fake_a = f(real_b)
    adv = lsgan(d_b(fake_b), 1.0) + lsgan(d_a(fake_a), 1.0)
    cyc = l1(f(fake_b), real_a) + l1(g(fake_a), real_b)
    total = adv + lambda_cycle * cyc
    idt = ops.zeros(())
    if identity_weight > 0:
        idt = l1(g(real_b), real_b) + l1(f(real_a), real_a)
        total = total + identity_weight * lambda_cycle * idt
    return total, {"g_adv": adv, "cycle": cyc, "identity": idt}, fake_a, fake_b


def discriminator_losses(d_a: Net, d_b: Net, real_a: Any, real_b: Any, fake_a: Any, fake_b: Any
                         ) -> tuple[Any, dict[str, Any]]:
    la = 0.5 * (lsgan(d_a(real_a), 1.0) + lsgan(d_a(fake_a), 0.0))
    lb = 0.5 * (lsgan(d_b(real_b), 1.0) + lsgan(d_b(fake_b), 0.0))
    return la + lb, {"d_cine": la, "d_lge": lb}


@keras.saving.register_keras_serializable(package="lgenode_cyclegan")
class ConstantThenLinearDecay(keras.optimizers.schedules.LearningRateSchedule):
    """lr for the first ``decay_start`` steps, then linearly down to 0 at ``total_steps`` (CycleGAN)."""

    def __init__(self, lr: float, decay_start: int, total_steps: int) -> None:
        self.lr, self.decay_start, self.total_steps = float(lr), int(decay_start), int(total_steps)

    def __call__(self, step: Any) -> Any:
        span = max(self.total_steps - self.decay_start, 1)
        frac = (ops.cast(step, "float32") - self.decay_start) / span
        return self.lr * ops.clip(1.0 - frac, 0.0, 1.0)

    def get_config(self) -> dict[str, Any]:
        return {"lr": self.lr, "decay_start": self.decay_start, "total_steps": self.total_steps}


# --------------------------------------------------------------------------------------------
# Data: unpaired batches, image pool
# --------------------------------------------------------------------------------------------
class UnpairedSampler:
    """Random cine and (independently drawn) LGE crops; a batch is a pure function of (seed, epoch, step)."""

    def __init__(self, cine: np.ndarray, lge: np.ndarray, cfg: CycleGANConfig) -> None:
        if len(cine) == 0 or len(lge) == 0:
            raise ValueError("both domains need at least one slice")
        self.cine = to_gan_range(cine)
        self.lge = to_gan_range(lge)
        self.cfg = cfg

    def _augment(self, stack: np.ndarray, idx: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        c, j = self.cfg.crop_size, self.cfg.jitter
        out = np.empty((len(idx), c, c, 1), np.float32)
        for k, i in enumerate(idx):
            img = np.pad(stack[i], j, constant_values=-1.0) if j > 0 else stack[i]  # -1 = ROI zero padding
            top = int(rng.integers(0, img.shape[0] - c + 1))
            left = int(rng.integers(0, img.shape[1] - c + 1))
            crop = img[top:top + c, left:left + c]
            if self.cfg.flip:
                if rng.random() < 0.5:
                    crop = crop[:, ::-1]
                if rng.random() < 0.5:
                    crop = crop[::-1]
            out[k, ..., 0] = crop
        return out

    def batch(self, epoch: int, step: int) -> tuple[np.ndarray, np.ndarray]:
        rng = np.random.default_rng([self.cfg.seed, epoch, step])
        bs = self.cfg.batch_size
        a = self._augment(self.cine, rng.integers(0, len(self.cine), bs), rng)
        b = self._augment(self.lge, rng.integers(0, len(self.lge), bs), rng)
        return a, b


class ImagePool:
    """History of generated images (Shrivastava et al.): with p 0.5 a query returns a stored fake
    and stores the new one in its place; until the pool is full every fake is stored and returned."""

    def __init__(self, size: int, seed: int = 0) -> None:
        self.size = size
        self.images: list[np.ndarray] = []
        self.rng = np.random.default_rng(seed)

    def query(self, batch: np.ndarray) -> np.ndarray:
        if self.size <= 0:
            return batch
        out = []
        for img in np.asarray(batch):
            if len(self.images) < self.size:
                self.images.append(img.copy())
                out.append(img)
            elif self.rng.random() < 0.5:
                k = int(self.rng.integers(0, self.size))
                out.append(self.images[k])
                self.images[k] = img.copy()
            else:
                out.append(img)
        return np.stack(out).astype(np.float32)

    def state(self) -> dict[str, Any]:
        return {"images": np.stack(self.images) if self.images else np.zeros((0,)), "rng": self.rng.bit_generator.state}

    def restore(self, images: np.ndarray, rng_state: dict[str, Any]) -> None:
        self.images = [im for im in images] if images.ndim == 4 else []
        self.rng.bit_generator.state = rng_state


# --------------------------------------------------------------------------------------------
# Update steps per backend
# --------------------------------------------------------------------------------------------
class _TFSteps:
    def __init__(self, m: CycleGAN) -> None:
        import tensorflow as tf

        self.m = m
        self.g_step = tf.function(self._g_step, reduce_retracing=True)
        self.d_step = tf.function(self._d_step, reduce_retracing=True)

    def _g_step(self, a, b):  # type: ignore[no-untyped-def]
        import tensorflow as tf

        m = self.m
        with tf.GradientTape() as tape:
            total, parts, fake_a, fake_b = cycle_losses(
                lambda x: m.G(x, training=True), lambda x: m.F(x, training=True),
                lambda x: m.D_A(x, training=True), lambda x: m.D_B(x, training=True),
                a, b, m.cfg.lambda_cycle, m.cfg.identity_weight)
        variables = m.G.trainable_variables + m.F.trainable_variables
        m.opt_g.apply_gradients(zip(tape.gradient(total, variables), variables))
        return {"g_loss": total, **parts}, fake_a, fake_b

    def _d_step(self, a, b, fake_a, fake_b):  # type: ignore[no-untyped-def]
        import tensorflow as tf

        m = self.m
        with tf.GradientTape() as tape:
            total, parts = discriminator_losses(lambda x: m.D_A(x, training=True),
                                                lambda x: m.D_B(x, training=True), a, b, fake_a, fake_b)
        variables = m.D_A.trainable_variables + m.D_B.trainable_variables
        m.opt_d.apply_gradients(zip(tape.gradient(total, variables), variables))
        return {"d_loss": total, **parts}

    def sync(self) -> None:  # variables are updated in place
        return None

    def reload(self) -> None:
        return None


class _JaxSteps:
    """Functional state: trainable variables of the four nets + both optimizers' variables, as arrays."""

    def __init__(self, m: CycleGAN) -> None:
        import jax

        self.m = m
        self.reload()
        self.g_step_jit = jax.jit(self._g_step)
        self.d_step_jit = jax.jit(self._d_step)

    def reload(self) -> None:
        m = self.m
        self.tv = {k: [v.value for v in net.trainable_variables] for k, net in m.nets.items()}
        self.ntv = {k: [v.value for v in net.non_trainable_variables] for k, net in m.nets.items()}
        self.opt_g = [v.value for v in m.opt_g.variables]
        self.opt_d = [v.value for v in m.opt_d.variables]

    def _caller(self, key: str, tv):  # type: ignore[no-untyped-def]
        net, ntv = self.m.nets[key], self.ntv[key]
        return lambda x: net.stateless_call(tv, ntv, x, training=True)[0]

    def _g_step(self, tv_g, tv_f, tv_da, tv_db, opt_vars, a, b):  # type: ignore[no-untyped-def]
        import jax

        m = self.m

        def loss_fn(gf):  # type: ignore[no-untyped-def]
            total, parts, fake_a, fake_b = cycle_losses(
                self._caller("G", gf[0]), self._caller("F", gf[1]), self._caller("D_A", tv_da),
                self._caller("D_B", tv_db), a, b, m.cfg.lambda_cycle, m.cfg.identity_weight)
            return total, (parts, fake_a, fake_b)

        (total, (parts, fake_a, fake_b)), grads = jax.value_and_grad(loss_fn, has_aux=True)((tv_g, tv_f))
        new_vars, opt_vars = m.opt_g.stateless_apply(opt_vars, grads[0] + grads[1], tv_g + tv_f)
        return new_vars[:len(tv_g)], new_vars[len(tv_g):], opt_vars, {"g_loss": total, **parts}, fake_a, fake_b

    def _d_step(self, tv_da, tv_db, opt_vars, a, b, fake_a, fake_b):  # type: ignore[no-untyped-def]
        import jax

        m = self.m

        def loss_fn(dd):  # type: ignore[no-untyped-def]
            return discriminator_losses(self._caller("D_A", dd[0]), self._caller("D_B", dd[1]),
                                        a, b, fake_a, fake_b)

        (total, parts), grads = jax.value_and_grad(loss_fn, has_aux=True)((tv_da, tv_db))
        new_vars, opt_vars = m.opt_d.stateless_apply(opt_vars, grads[0] + grads[1], tv_da + tv_db)
        return new_vars[:len(tv_da)], new_vars[len(tv_da):], opt_vars, {"d_loss": total, **parts}

    def g_step(self, a, b):  # type: ignore[no-untyped-def]
        t = self.tv
        t["G"], t["F"], self.opt_g, logs, fake_a, fake_b = self.g_step_jit(
            t["G"], t["F"], t["D_A"], t["D_B"], self.opt_g, a, b)
        return logs, fake_a, fake_b

    def d_step(self, a, b, fake_a, fake_b):  # type: ignore[no-untyped-def]
        t = self.tv
        t["D_A"], t["D_B"], self.opt_d, logs = self.d_step_jit(t["D_A"], t["D_B"], self.opt_d, a, b, fake_a, fake_b)
        return logs

    def sync(self) -> None:
        """Write the functional state back into the Keras variables (before saving or predicting)."""
        m = self.m
        for k, net in m.nets.items():
            for v, val in zip(net.trainable_variables, self.tv[k]):
                v.assign(val)
        for opt, vals in ((m.opt_g, self.opt_g), (m.opt_d, self.opt_d)):
            for v, val in zip(opt.variables, vals):
                v.assign(val)


# --------------------------------------------------------------------------------------------
# The model
# --------------------------------------------------------------------------------------------
class CycleGAN:
    def __init__(self, cfg: CycleGANConfig) -> None:
        if cfg.crop_size > ROI or cfg.crop_size % (2 ** cfg.disc_layers) or cfg.crop_size % 4:
            raise ValueError(f"crop_size must be <= {ROI} and divisible by 4 and 2**disc_layers")
        keras.utils.set_random_seed(cfg.seed)
        self.cfg = cfg
        train_size = None if cfg.generator == "resnet" else cfg.crop_size
        self.nets: dict[str, keras.Model] = {
            "G": build_generator(cfg, "g_cine2lge", train_size),
            "F": build_generator(cfg, "g_lge2cine", train_size),
            "D_A": build_discriminator(cfg, "d_cine"),
            "D_B": build_discriminator(cfg, "d_lge"),
        }
        for k, net in self.nets.items():
            if net.non_trainable_variables:
                raise ValueError(f"{k} has non-trainable state (batch norm?); CycleGAN nets use instance norm")
        self.G, self.F, self.D_A, self.D_B = (self.nets[k] for k in ("G", "F", "D_A", "D_B"))
        self.opt_g = self._optimizer("adam_g")
        self.opt_d = self._optimizer("adam_d")
        self.opt_g.build(self.G.trainable_variables + self.F.trainable_variables)
        self.opt_d.build(self.D_A.trainable_variables + self.D_B.trainable_variables)
        self.pool_a = ImagePool(cfg.pool_size, seed=cfg.seed + 1)
        self.pool_b = ImagePool(cfg.pool_size, seed=cfg.seed + 2)
        self.backend = keras.backend.backend()
        self.steps: _TFSteps | _JaxSteps
        if self.backend == "tensorflow":
            self.steps = _TFSteps(self)
        elif self.backend == "jax":
            self.steps = _JaxSteps(self)
        else:
            raise RuntimeError(f"CycleGAN training supports the tensorflow and jax backends, not {self.backend}")

    def _optimizer(self, name: str) -> keras.optimizers.Optimizer:
        cfg = self.cfg
        lr = ConstantThenLinearDecay(cfg.learning_rate, int(cfg.decay_from * cfg.total_steps), cfg.total_steps)
        return keras.optimizers.Adam(learning_rate=lr, beta_1=cfg.beta_1, beta_2=0.999, name=name)

    def sync(self) -> None:
        """Make the Keras variables current (JAX keeps the training state outside them)."""
        self.steps.sync()

    def current_lr(self) -> float:
        """Learning rate of the next step (the schedule at the optimizer's iteration count)."""
        self.steps.sync()
        return float(ops.convert_to_numpy(self.opt_g.learning_rate))

    def train_step(self, a: np.ndarray, b: np.ndarray) -> dict[str, float]:
        """One G+F update, then one D_A+D_B update on pooled fakes; returns the losses as floats."""
        g_logs, fake_a, fake_b = self.steps.g_step(a, b)
        pa = self.pool_a.query(np.asarray(ops.convert_to_numpy(fake_a)))
        pb = self.pool_b.query(np.asarray(ops.convert_to_numpy(fake_b)))
        d_logs = self.steps.d_step(a, b, pa, pb)
        return {k: float(ops.convert_to_numpy(v)) for k, v in {**g_logs, **d_logs}.items()}

    # ---- inference ----------------------------------------------------------------------
    def translate(self, cine: np.ndarray, batch_size: int = 16) -> np.ndarray:
        """cine ROI slices (N,128,128) normalised -> fake LGE (N,128,128) in [0,1] (before per-image normalisation)."""
        self.steps.sync()
        return _run_generator(self.export_generator(), cine, batch_size)

    def export_generator(self) -> keras.Model:
        """G on 128x128 inputs (the U-Net is rebuilt at full size with the trained weights)."""
        self.steps.sync()
        if self.cfg.generator == "resnet" or self.cfg.crop_size == ROI:
            return self.G
        full = build_generator(self.cfg, "g_cine2lge", ROI)
        full.set_weights(self.G.get_weights())
        return full

    # ---- checkpoints ----------------------------------------------------------------------
    def save_checkpoint(self, folder: Path, epoch: int) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.steps.sync()
        for k, net in self.nets.items():
            net.save_weights(folder / f"{k}.weights.h5")
        arrays: dict[str, np.ndarray] = {}
        for name, opt in (("opt_g", self.opt_g), ("opt_d", self.opt_d)):
            for i, v in enumerate(opt.variables):
                arrays[f"{name}_{i:04d}"] = np.asarray(ops.convert_to_numpy(v))
        pools = {"pool_a": self.pool_a.state(), "pool_b": self.pool_b.state()}
        for k, st in pools.items():
            arrays[f"{k}_images"] = st["images"]
        tmp = folder / "state.tmp.npz"
        np.savez(tmp, **arrays)
        tmp.replace(folder / "state.npz")
        meta = {"epoch": epoch, "pool_rng": {k: st["rng"] for k, st in pools.items()}}
        (folder / "checkpoint.json").write_text(json.dumps(meta, indent=1))

    def load_checkpoint(self, folder: Path) -> int:
        """Restore nets, optimizers and pools; returns the last completed epoch."""
        meta = json.loads((folder / "checkpoint.json").read_text())
        for k, net in self.nets.items():
            net.load_weights(folder / f"{k}.weights.h5")
        with np.load(folder / "state.npz") as z:
            for name, opt in (("opt_g", self.opt_g), ("opt_d", self.opt_d)):
                for i, v in enumerate(opt.variables):
                    v.assign(z[f"{name}_{i:04d}"])
            self.pool_a.restore(z["pool_a_images"], meta["pool_rng"]["pool_a"])
            self.pool_b.restore(z["pool_b_images"], meta["pool_rng"]["pool_b"])
        self.steps.reload()
        return int(meta["epoch"])


def _run_generator(model: Callable[..., Any], cine: np.ndarray, batch_size: int = 16) -> np.ndarray:
    x = to_gan_range(np.asarray(cine, np.float32))[..., None]
    outs = []
    for i in range(0, len(x), batch_size):
        outs.append(np.asarray(ops.convert_to_numpy(model(x[i:i + batch_size], training=False))))
    y = np.concatenate(outs)[..., 0] if outs else np.zeros((0, ROI, ROI), np.float32)
    return from_gan_range(y)


def load_generator(folder: str | Path) -> Callable[[np.ndarray], np.ndarray]:
    """cine ROI slices (N,128,128) float32 normalised -> LGE (N,128,128) float32, each image normalised."""
    path = Path(folder) / NET_FILES["G"]
    if not path.exists():
        raise FileNotFoundError(f"no {NET_FILES['G']} in {folder}")
    model = keras.saving.load_model(path, compile=False)

    def generate(cine: np.ndarray) -> np.ndarray:
        cine = np.asarray(cine, np.float32)
        if cine.ndim != 3 or cine.shape[1:] != (ROI, ROI):
            raise ValueError(f"cine must be (N, {ROI}, {ROI}), got {cine.shape}")
        return normalise_each(_run_generator(model, cine))

    return generate


def held_out_similarity(fake_lge: np.ndarray, real_lge: np.ndarray) -> dict[str, float | int]:
    """PSNR/SSIM (``image_metrics.paired_similarity``) of fakes against the real LGE of the same
    slices, both normalised per image (the fakes as ``load_generator`` returns them, the real ones
    with ``CineLgeSlices.per_image("lge")``)."""
    from pipeline.synth.image_metrics import paired_similarity

    return paired_similarity(np.asarray(fake_lge, np.float32), np.asarray(real_lge, np.float32))


def versions() -> dict[str, str]:
    import platform

    out = {"python": platform.python_version(), "keras": keras.__version__, "backend": keras.backend.backend(),
           "numpy": np.__version__, "time": time.strftime("%Y-%m-%d %H:%M:%S")}
    try:
        if keras.backend.backend() == "tensorflow":
            import tensorflow as tf

            out["tensorflow"] = tf.__version__
        elif keras.backend.backend() == "jax":
            import jax

            out["jax"] = jax.__version__
    except ImportError:  # pragma: no cover
        pass
    return out


def config_to_json(cfg: CycleGANConfig) -> dict[str, Any]:
    return asdict(cfg)


# --------------------------------------------------------------------------------------------
# Training run: folder layout, resume, figures, card
# --------------------------------------------------------------------------------------------
# Settings that fix the shapes of the nets: a resumed run must keep them.
ARCH_KEYS = ("generator", "base_filters", "n_res_blocks", "unet_depth", "disc_filters", "disc_layers", "crop_size")
LOSS_KEYS = ("d_loss", "d_cine", "d_lge", "g_loss", "g_adv", "cycle", "identity")
MAX_SAMPLES = 6


def resume_config(out: Path, overrides: dict[str, Any]) -> CycleGANConfig:
    """Settings of the run in ``out`` (gan.json) with ``overrides``; architecture keys may not change."""
    meta = json.loads((Path(out) / "gan.json").read_text())
    saved = CycleGANConfig.from_dict(meta["settings"])
    changed = [k for k in ARCH_KEYS if k in overrides and overrides[k] != getattr(saved, k)]
    if changed:
        raise ValueError(f"cannot resume with different {', '.join(changed)} (the checkpoint's nets differ)")
    return CycleGANConfig.from_dict({**asdict(saved), **overrides})


def train(cfg: CycleGANConfig, out: str | Path, data_dir: str | Path | None = None, resume: bool = False,
          progress: bool = True, slices: Any = None) -> dict[str, Any]:
    """Train (or resume) a CycleGAN into ``out``; returns the final gan.json content.

    ``slices``: a ``cine_slices.CineLgeSlices`` to use instead of loading MyoPS (tests).
    """
    from pipeline.synth import cine_slices as cs

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    ckpt = out / "checkpoints"
    if slices is None:
        slices = cs.load_slices(data_dir, include_unlabelled=cfg.include_unlabelled,
                                exclude_cases=cfg.exclude_cases, unlabelled_centre=cfg.unlabelled_centre,
                                progress=progress)
    missing = [c for c in cfg.hold_out if c not in slices.cases]
    if missing:
        log.warning("held-out cases not found in the data: %s", ", ".join(missing))
    train_set, held = slices.split(cfg.hold_out)
    held = held.select(held.labelled)  # paired scores need the real LGE; masks make the figure useful
    log.info("CycleGAN data: %s; held out %d slices", train_set.summary(), len(held))

    model = CycleGAN(cfg)
    history: list[dict[str, Any]] = []
    start = 0
    if resume and (ckpt / "checkpoint.json").exists():
        start = model.load_checkpoint(ckpt)
        if (out / "history.json").exists():
            history = [e for e in json.loads((out / "history.json").read_text())["epochs"] if e["epoch"] <= start]
        log.info("resumed after epoch %d", start)
    elif resume:
        log.warning("--resume: no checkpoint in %s, starting from scratch", ckpt)

    sampler = UnpairedSampler(train_set.cine, train_set.lge, cfg)
    held_real = held.per_image("lge")
    baseline = held_out_similarity(held.per_image("cine"), held_real) if len(held) >= 1 else None
    meta = _gan_meta(cfg, slices, train_set, held, baseline)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=cfg.total_steps, initial=start * cfg.steps_per_epoch, desc="cyclegan", unit="step",
                   dynamic_ncols=True)
    try:
        for epoch in range(start + 1, cfg.epochs + 1):
            t0 = time.perf_counter()
            sums = {k: 0.0 for k in LOSS_KEYS}
            times = []
            for step in range(cfg.steps_per_epoch):
                a, b = sampler.batch(epoch, step)
                ts = time.perf_counter()
                logs = model.train_step(a, b)
                times.append(time.perf_counter() - ts)
                if not all(np.isfinite(v) for v in logs.values()):
                    raise FloatingPointError(f"non-finite loss at epoch {epoch} step {step}: {logs}")
                for k in LOSS_KEYS:
                    sums[k] += logs[k]
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(ep=epoch, D=f"{logs['d_loss']:.3f}", G=f"{logs['g_adv']:.3f}",
                                    cyc=f"{logs['cycle']:.3f}")
            entry: dict[str, Any] = {"epoch": epoch, **{k: v / cfg.steps_per_epoch for k, v in sums.items()}}
            # The first step of a run includes tracing/compilation: leave it out of the timing.
            entry["ms_per_step"] = 1000.0 * float(np.median(times[1:] if len(times) > 1 else times))
            entry["lr"] = model.current_lr()
            fake = None
            if len(held):
                fake = normalise_each(model.translate(held.cine))
                sim = held_out_similarity(fake, held_real)
                entry["val_psnr"], entry["val_ssim"] = sim["psnr_mean"], sim["ssim_mean"]
            entry["seconds"] = time.perf_counter() - t0
            history.append(entry)
            model.save_checkpoint(ckpt, epoch)
            model.export_generator().save(out / NET_FILES["G"])
            meta.update(epochs_done=epoch, status="training" if epoch < cfg.epochs else "done",
                        last_epoch=entry, versions=versions())
            _write_run_files(out, meta, history, held, fake, cfg)
            log.info("epoch %d: %s", epoch, {k: round(v, 4) for k, v in entry.items() if isinstance(v, float)})
    finally:
        if bar is not None:
            bar.close()
    if not history or history[-1]["epoch"] < cfg.epochs:
        return meta
    model.steps.sync()
    for k in ("F", "D_A", "D_B"):  # small; kept so that the run can be inspected or extended
        model.nets[k].save(out / NET_FILES[k])
    meta["status"] = "done"
    _write_run_files(out, meta, history, held, normalise_each(model.translate(held.cine)) if len(held) else None,
                     cfg)
    return meta


def _gan_meta(cfg: CycleGANConfig, slices: Any, train_set: Any, held: Any, baseline: dict[str, Any] | None
              ) -> dict[str, Any]:
    return {
        "kind": KIND,
        "settings": config_to_json(cfg),
        "generator_file": NET_FILES["G"],
        "direction": "cine (bSSFP, MyoPS _C0) -> LGE",
        "data": "MyoPS 2020 cine + LGE ROI slices (pipeline.synth.cine_slices), 128x128 at 1.25 mm",
        "train_cases": train_set.cases,
        "train_labelled_cases": [c for c in train_set.cases if train_set.labelled[train_set.case_ids.index(c)]],
        "held_out_cases": held.cases,
        "slices": {"train_cine": len(train_set), "train_lge": len(train_set), "held_out": len(held),
                   "all": len(slices), "all_labelled": int(slices.labelled.sum())},
        "centre_source": slices.centre_source,
        "held_out_baseline_cine_as_lge": baseline,
        "metric_note": "val_psnr/val_ssim: fake LGE vs real LGE of the same held-out slice, each image "
                       "pp.normalize_intensity-normalised (the real one from its raw ROI) and clipped to [0,1] "
                       "(image_metrics.paired_similarity)",
        "status": "training",
        "epochs_done": 0,
        "versions": versions(),
    }


def _write_run_files(out: Path, meta: dict[str, Any], history: list[dict[str, Any]], held: Any,
                     fake: np.ndarray | None, cfg: CycleGANConfig) -> None:
    _write_json(out / "history.json", {"epochs": history})
    _write_json(out / "gan.json", meta)
    plot_curves(history, out / "curves.png")
    if fake is not None and len(held):
        k = np.unique(np.linspace(0, len(held) - 1, min(MAX_SAMPLES, len(held))).round().astype(int))
        titles = [f"{held.case_ids[i]} s{int(held.slice_index[i])}" for i in k]
        figure_rows([held.cine[k], fake[k], held.per_image("lge")[k]], ["cine (input)", "fake LGE", "real LGE"],
                    titles, out / "samples.png", masks=held.masks[k], mask_column=2)
    (out / "MODEL_CARD.md").write_text(model_card(meta, history))


def _write_json(path: Path, obj: Any) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(obj, indent=1, default=_json_default))
    tmp.replace(path)


def _json_default(o: Any) -> Any:
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(type(o))


def plot_curves(history: list[dict[str, Any]], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = [e["epoch"] for e in history]
    fig, axes = plt.subplots(1, 3, figsize=(14, 4))
    for k in ("d_cine", "d_lge", "g_adv"):
        axes[0].plot(x, [e[k] for e in history], label=k)
    axes[0].set_title("adversarial (LSGAN)")
    for k in ("cycle", "identity"):
        axes[1].plot(x, [e[k] for e in history], label=f"{k} L1")
    axes[1].set_title("cycle / identity")
    if any("val_psnr" in e for e in history):
        axes[2].plot(x, [e.get("val_psnr", np.nan) for e in history], color="C0", label="PSNR (dB)")
        axes[2].set_ylabel("PSNR (dB)")
        ax2 = axes[2].twinx()
        ax2.plot(x, [e.get("val_ssim", np.nan) for e in history], color="C1", label="SSIM")
        ax2.set_ylabel("SSIM")
        axes[2].set_title("held-out: fake vs real LGE")
        ax2.legend(loc="lower right")
    for ax in axes:
        ax.set_xlabel("epoch")
        ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return Path(path)


def figure_rows(columns: list[np.ndarray], headers: list[str], row_titles: list[str], path: Path,
                masks: np.ndarray | None = None, mask_column: int | None = None) -> Path:
    """Grid with one row per slice and one column per image stack; mask contours drawn on ``mask_column``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n, m = len(columns[0]), len(columns)
    fig, axes = plt.subplots(n, m, figsize=(2.2 * m, 2.2 * n), squeeze=False)
    for i in range(n):
        for j in range(m):
            ax = axes[i, j]
            ax.imshow(columns[j][i], cmap="gray", vmin=0.0, vmax=1.2)
            if masks is not None and j == mask_column and masks[i].any():
                ax.contour(masks[i], levels=[0.5, 1.5, 2.5], colors=["r", "y", "c"], linewidths=0.6)
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(headers[j], fontsize=9)
            if j == 0:
                ax.set_ylabel(row_titles[i], fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return Path(path)


def model_card(meta: dict[str, Any], history: list[dict[str, Any]]) -> str:
    s = meta["settings"]
    last = history[-1] if history else {}
    base = meta.get("held_out_baseline_cine_as_lge") or {}
    val = (f"PSNR {last['val_psnr']:.2f} dB, SSIM {last['val_ssim']:.3f}" if "val_psnr" in last else "n/a")
    return f"""# Model card: CycleGAN cine -> LGE (lgenode pipeline, issue 6)

Status: **{meta.get('status')}**, {meta.get('epochs_done', 0)} of {s['epochs']} epochs
({s['steps_per_epoch']} steps x batch {s['batch_size']}), backend {meta['versions'].get('backend')}.

## What it is
Unpaired image translation (Zhu et al. 2017) from cine/bSSFP short-axis ROI slices to LGE-looking
slices, on the 128x128, 1.25 mm LV-centred ROI of `models/preprocess.py`. `generator.keras` is the
cine -> LGE generator ({s['generator']} generator, base {s['base_filters']} filters, instance norm,
tanh output in [-1, 1]); `pipeline.synth.cyclegan.load_generator(folder)` wraps it.
Losses: LSGAN adversarial, cycle L1 x {s['lambda_cycle']}, identity L1 x {s['identity_weight'] * s['lambda_cycle']},
Adam {s['learning_rate']} (beta1 {s['beta_1']}), linear decay after {s['decay_from']:.0%} of the steps,
image pool {s['pool_size']}; trained on random {s['crop_size']} px crops (+-{s['jitter']} px shift, flips).

## Training data
MyoPS 2020 (Zhuang / Li et al.): `_C0` (bSSFP) and `_LGE` volumes of {len(meta['train_cases'])} cases
({len(meta['train_labelled_cases'])} labelled + the unlabelled ones), {meta['slices']['train_cine']} slices per domain, drawn
**unpaired** (cine and LGE batches sampled independently). Held out from training (both domains):
{', '.join(meta['held_out_cases']) or 'none'} ({meta['slices']['held_out']} slices).
Licence: MyoPS is research-only (terms not verified; do not redistribute the data) -> these weights
are for **non-commercial research use only**. Cite Li et al., MedIA 2023 and Zhuang, TPAMI 2019.

## Intended use
A source of synthetic LGE training images for the segmentation experiment of issue 6: the fake
LGE of a labelled cine slice is paired with that slice's ground-truth mask (C0, LGE and labels
are co-registered in MyoPS). Not for diagnosis, not a substitute for contrast imaging.

## Held-out check (paired: fake LGE vs the real LGE of the same slice, per-image normalised)
Last epoch: {val}. Baseline "cine used as LGE": PSNR {base.get('psnr_mean', float('nan')):.2f} dB,
SSIM {base.get('ssim_mean', float('nan')):.3f}.

## Limitations
* A cine image has no contrast-agent information: the generator cannot know where scar is. It
  learns the LGE appearance (nulled myocardium, bright blood) and at best invents plausible
  enhancement; the carried-over mask's infarct label is **not** guaranteed to be bright in the
  fake image. Check the FCN-score before using it for the infarct classes.
* Tiny training set ({meta['slices']['train_cine']} slices per domain, one centre), short CPU budget.
* MyoPS C0/LGE were resampled by the challenge; other cine protocols (other vendors, cine
  phases, no co-registration) are outside what it saw.
"""


# --------------------------------------------------------------------------------------------
# Generation: the synthetic source (fake LGE + carried-over gd masks)
# --------------------------------------------------------------------------------------------
def generate(generator_dir: str | Path, out: str | Path, data_dir: str | Path | None = None,
             held_out: bool = False, include_unlabelled: bool = False, progress: bool = True,
             slices: Any = None, batch_size: int = 16) -> dict[str, Any]:
    """Write ``out/pairs.npz`` (+ pairs.json, pairs.png): fake LGE of labelled MyoPS cine slices with
    their gd masks. Training cases by default; ``held_out`` uses the held-out cases instead and adds
    the real LGE (``real``) for paired PSNR/SSIM. ``include_unlabelled`` also writes the fake LGE of
    the unlabelled training cases to ``unlabelled.npz`` (images only: no mask to carry over).
    """
    from pipeline.synth import cine_slices as cs

    gdir, out = Path(generator_dir), Path(out)
    meta = json.loads((gdir / "gan.json").read_text())
    if meta.get("kind") != KIND:
        raise ValueError(f"{gdir}: gan.json kind is {meta.get('kind')!r}, not {KIND!r}")
    cfg = CycleGANConfig.from_dict(meta["settings"])
    hold = list(meta.get("held_out_cases") or cfg.hold_out)
    if slices is None:
        slices = cs.load_slices(data_dir, include_unlabelled=include_unlabelled and not held_out,
                                unlabelled_centre=cfg.unlabelled_centre, progress=progress)
    train_set, held = slices.split(hold)
    train_set = train_set.select(np.array([c not in cfg.exclude_cases for c in train_set.case_ids], bool))
    chosen = held if held_out else train_set
    labelled = chosen.select(chosen.labelled)
    if len(labelled) == 0:
        raise ValueError("no labelled slices to translate" + (" (held-out cases missing?)" if held_out else ""))
    fn = load_generator(gdir)
    fake = _batched(fn, labelled.cine, batch_size, progress, "cine->LGE")
    out.mkdir(parents=True, exist_ok=True)
    arrays: dict[str, np.ndarray] = {
        "images": fake.astype(np.float32), "masks": labelled.masks.astype(np.uint8),
        "cine": labelled.cine.astype(np.float32), "case_ids": np.asarray(labelled.case_ids),
        "slice_index": labelled.slice_index.astype(np.int32)}
    info: dict[str, Any] = {
        "source": KIND, "generator": str(gdir), "generator_settings": meta["settings"],
        "generator_epochs_done": meta.get("epochs_done"), "split": "held_out" if held_out else "train",
        "n": len(fake), "cases": labelled.cases,
        "slices_per_case": {c: labelled.case_ids.count(c) for c in labelled.cases},
        "masks": "MyoPS gd labels of the same slice (C0/LGE/gd co-registered), mapped 500->1, 200/1220->2, "
                 "2221->3, 600->0; no class 4",
        "images": "fake LGE, pp.normalize_intensity per image", "versions": versions()}
    if held_out:
        arrays["real"] = labelled.per_image("lge")
        info["paired_fake_vs_real"] = held_out_similarity(fake, arrays["real"])
        info["paired_cine_vs_real_baseline"] = held_out_similarity(labelled.per_image("cine"), arrays["real"])
    np.savez_compressed(out / "pairs.npz", **arrays)
    if include_unlabelled and not held_out:
        unl = train_set.select(~train_set.labelled)
        if len(unl):
            np.savez_compressed(out / "unlabelled.npz", images=_batched(fn, unl.cine, batch_size, progress,
                                                                        "unlabelled"),
                                cine=unl.cine, case_ids=np.asarray(unl.case_ids))
            info["unlabelled"] = {"n": len(unl), "file": "unlabelled.npz", "cases": unl.cases}
    k = np.unique(np.linspace(0, len(fake) - 1, min(8, len(fake))).round().astype(int))
    cols, heads = [labelled.cine[k], fake[k], fake[k]], ["cine", "fake LGE", "fake LGE + mask"]
    if held_out:
        cols.append(arrays["real"][k])
        heads.append("real LGE")
    figure_rows(cols, heads, [f"{labelled.case_ids[i]} s{int(labelled.slice_index[i])}" for i in k],
                out / "pairs.png", masks=labelled.masks[k], mask_column=2)
    _write_json(out / "pairs.json", info)
    return info


def _batched(fn: Callable[[np.ndarray], np.ndarray], x: np.ndarray, batch_size: int, progress: bool,
             desc: str) -> np.ndarray:
    starts = range(0, len(x), batch_size)
    if progress:
        from tqdm import tqdm

        starts = tqdm(starts, desc=desc, unit="batch")  # type: ignore[assignment]
    return np.concatenate([fn(x[i:i + batch_size]) for i in starts]).astype(np.float32)
