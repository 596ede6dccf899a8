"""CycleGAN cine (bSSFP) -> LGE on the 128x128 LV-centred ROI (Zhu et al. 2017), on the GAN kit.

Domain A is cine (MyoPS ``_C0``), domain B is LGE. ``G`` maps A to B (the product,
``generator.keras``), ``F`` maps B to A, ``D_A`` and ``D_B`` are instance-norm PatchGANs.
Images enter the nets through ``gan_layers.to_gan_range``; :func:`load_generator` returns each
fake image normalised with ``pp.normalize_intensity`` (the segmenter's input convention).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import keras
import numpy as np
from keras import ops

import models.preprocess as pp
from pipeline.synth import gan_run
from pipeline.synth.cine_slices import DEFAULT_HOLD_OUT, normalise_each
from pipeline.synth.gan_cards import cyclegan_card
from pipeline.synth.gan_figures import Column, Panel, image_grid, plot_history
from pipeline.synth.gan_layers import (
    build_patch_discriminator,
    build_resnet_generator,
    build_unet_generator,
    to_gan_range,
)
from pipeline.synth.gan_steps import NetCall, Step, Update, make_steps

log = logging.getLogger(__name__)

KIND = "cyclegan"
ROI = pp.ROI_SIZE
# Saved nets: the product first; the others are kept so that a finished run can be inspected or extended.
NET_FILES: dict[str, str] = {
    "G": "generator.keras",  # cine -> LGE
    "F": "generator_lge2cine.keras",
    "D_B": "discriminator_lge.keras",
    "D_A": "discriminator_cine.keras",
}
GENERATORS = ("resnet", "unet")
CHECKPOINT_LAYOUT = gan_run.CheckpointLayout(
    nets={k: f"{k}.weights.h5" for k in ("G", "F", "D_A", "D_B")},
    optimizers={"opt_g": ("state.npz", "opt_g_{i:04d}"), "opt_d": ("state.npz", "opt_d_{i:04d}")},
    state="checkpoint.json")
# Settings that fix the shapes of the nets: a resumed run must keep them.
ARCH_KEYS = ("generator", "base_filters", "n_res_blocks", "unet_depth", "disc_filters", "disc_layers", "crop_size")
LOSS_KEYS = ("d_loss", "d_cine", "d_lge", "g_loss", "g_adv", "cycle", "identity")
MAX_SAMPLES = 6


@dataclass
class CycleGANConfig:
    """Settings of a CycleGAN run (saved as ``settings`` in gan.json).

    ``generator`` ``"unet"`` keeps the anatomy in place through its skip connections (the cine
    masks are carried over to the fake LGE) and is the faster one; ``"resnet"`` is the paper's
    net. Both train on random ``crop_size`` crops; the U-Net, which has a fixed input size, is
    rebuilt at 128 px with the trained weights for export. The identity loss weight is
    ``identity_weight * lambda_cycle``; the learning rate is constant for the first ``decay_from``
    fraction of all steps, then falls linearly to 0. ``pool_size`` 0 turns the image pool off.
    """

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
    identity_weight: float = 0.5
    learning_rate: float = 2e-4
    beta_1: float = 0.5
    decay_from: float = 0.5
    pool_size: int = 50
    crop_size: int = 96
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
        """Config from a dict; unknown keys (e.g. of a newer version) are ignored."""
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})


def config_to_json(cfg: CycleGANConfig) -> dict[str, Any]:
    return asdict(cfg)


def build_generator(cfg: CycleGANConfig, name: str, size: int | None = None) -> keras.Model:
    """The configured generator; ``size`` None gives a size-free ResNet (the U-Net defaults to 128 px).

    Raises
    ------
    ValueError
        If ``cfg.generator`` is not one of ``GENERATORS``.
    """
    if cfg.generator == "resnet":
        return build_resnet_generator(cfg.base_filters, cfg.n_res_blocks, name=name, size=size)
    if cfg.generator == "unet":
        return build_unet_generator(1, 1, cfg.base_filters, cfg.unet_depth, norm="instance", name=name,
                                    size=size or ROI)
    raise ValueError(f"generator must be one of {GENERATORS}, got {cfg.generator!r}")


def build_discriminator(cfg: CycleGANConfig, name: str) -> keras.Model:
    return build_patch_discriminator(1, cfg.disc_filters, cfg.disc_layers, norm="instance", name=name,
                                     size=cfg.crop_size)


# ------------------------------------------------------------------------------------------
# Losses (keras.ops: both backends)
# ------------------------------------------------------------------------------------------
Net = Callable[[Any], Any]


def lsgan(pred: Any, target: float) -> Any:
    """Least-squares adversarial loss ``mean((pred - target)^2)``."""
    return ops.mean(ops.square(pred - target))


def l1(a: Any, b: Any) -> Any:
    return ops.mean(ops.abs(a - b))


def cycle_losses(g: Net, f: Net, d_a: Net, d_b: Net, real_a: Any, real_b: Any,
                 lambda_cycle: float, identity_weight: float) -> tuple[Any, dict[str, Any], Any, Any]:
    """The generators' objective.

    ``lsgan(D_B(G(a)), 1) + lsgan(D_A(F(b)), 1)`` + ``lambda_cycle`` x cycle L1
    ``|F(G(a)) - a| + |G(F(b)) - b|`` + ``identity_weight * lambda_cycle`` x identity L1
    ``|G(b) - b| + |F(a) - a|`` (it keeps the intensity mapping from drifting).

    Parameters
    ----------
    g, f: Callable
        Generators A -> B and B -> A.
    d_a, d_b: Callable
        Discriminators of domain A and B.
    real_a, real_b: Any
        Batches of both domains in [-1, 1].
    lambda_cycle: float
        Weight of the cycle term.
    identity_weight: float
        Identity weight relative to ``lambda_cycle``; 0 skips the term.

    Returns
    -------
    tuple[Any, dict[str, Any], Any, Any]
        Total, its parts (``g_adv``, ``cycle``, ``identity``), fake A, fake B.
    """
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
    """``0.5 * (lsgan(D(real), 1) + lsgan(D(fake), 0))`` per domain; returns (sum, ``d_cine``/``d_lge``)."""
    la = 0.5 * (lsgan(d_a(real_a), 1.0) + lsgan(d_a(fake_a), 0.0))
    lb = 0.5 * (lsgan(d_b(real_b), 1.0) + lsgan(d_b(fake_b), 0.0))
    return la + lb, {"d_cine": la, "d_lge": lb}


@keras.saving.register_keras_serializable(package="lgenode_cyclegan")
class ConstantThenLinearDecay(keras.optimizers.schedules.LearningRateSchedule):
    """``lr`` for the first ``decay_start`` steps, then linearly down to 0 at ``total_steps``."""

    def __init__(self, lr: float, decay_start: int, total_steps: int) -> None:
        self.lr, self.decay_start, self.total_steps = float(lr), int(decay_start), int(total_steps)

    def __call__(self, step: Any) -> Any:
        span = max(self.total_steps - self.decay_start, 1)
        frac = (ops.cast(step, "float32") - self.decay_start) / span
        return self.lr * ops.clip(1.0 - frac, 0.0, 1.0)

    def get_config(self) -> dict[str, Any]:
        return {"lr": self.lr, "decay_start": self.decay_start, "total_steps": self.total_steps}


# ------------------------------------------------------------------------------------------
# Data: unpaired batches, image pool
# ------------------------------------------------------------------------------------------
class UnpairedSampler:
    """Random cine crops and independently drawn LGE crops.

    Parameters
    ----------
    cine, lge: numpy.ndarray
        (N, 128, 128) normalised ROI slices of each domain.
    cfg: CycleGANConfig
        Batch size, crop, jitter, flips and seed.

    Raises
    ------
    ValueError
        If a domain has no slice.
    """

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
        """(cine, LGE) crops (B, crop, crop, 1) in [-1, 1]: a pure function of (seed, epoch, step)."""
        rng = np.random.default_rng([self.cfg.seed, epoch, step])
        bs = self.cfg.batch_size
        a = self._augment(self.cine, rng.integers(0, len(self.cine), bs), rng)
        b = self._augment(self.lge, rng.integers(0, len(self.lge), bs), rng)
        return a, b


class ImagePool:
    """History of generated images (Shrivastava et al. 2017) shown to the discriminators.

    Until the pool holds ``size`` images every fake is stored and returned; then, with
    probability 0.5, a query returns a stored fake and stores the new one in its place.

    Parameters
    ----------
    size: int
        Images kept; 0 returns every batch unchanged.
    seed: int
        Seed of the pool's own random generator (saved with the checkpoints).
    """

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


# ------------------------------------------------------------------------------------------
# The model
# ------------------------------------------------------------------------------------------
class CycleGAN:
    """Nets, optimizers (Adam with :class:`ConstantThenLinearDecay`), image pools and update steps.

    A training step updates ``G`` and ``F`` on :func:`cycle_losses`, then ``D_A`` and ``D_B`` on
    :func:`discriminator_losses` with fakes from the image pools.

    Parameters
    ----------
    cfg: CycleGANConfig
        Settings; the nets are seeded with ``cfg.seed``.

    Raises
    ------
    ValueError
        If ``crop_size`` does not fit the ROI and the discriminator, or a net has non-trainable state.
    RuntimeError
        If the Keras backend is neither TensorFlow nor JAX.
    """

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
        self.pool_a = ImagePool(cfg.pool_size, seed=cfg.seed + 1)
        self.pool_b = ImagePool(cfg.pool_size, seed=cfg.seed + 2)
        self.steps = make_steps(self.nets, {
            "generators": Step(self._generator_objective, (Update("g_loss", ("G", "F"), self.opt_g),)),
            "discriminators": Step(self._discriminator_objective, (Update("d_loss", ("D_A", "D_B"), self.opt_d),)),
        })

    def _optimizer(self, name: str) -> keras.optimizers.Optimizer:
        cfg = self.cfg
        lr = ConstantThenLinearDecay(cfg.learning_rate, int(cfg.decay_from * cfg.total_steps), cfg.total_steps)
        return keras.optimizers.Adam(learning_rate=lr, beta_1=cfg.beta_1, beta_2=0.999, name=name)

    def _generator_objective(self, call: NetCall, a: Any, b: Any) -> tuple[dict[str, Any], tuple[Any, ...]]:
        total, parts, fake_a, fake_b = cycle_losses(*(partial(call, k) for k in ("G", "F", "D_A", "D_B")), a, b,
                                                    self.cfg.lambda_cycle, self.cfg.identity_weight)
        return {"g_loss": total, **parts}, (fake_a, fake_b)

    def _discriminator_objective(self, call: NetCall, a: Any, b: Any, fake_a: Any, fake_b: Any
                                 ) -> tuple[dict[str, Any], tuple[Any, ...]]:
        total, parts = discriminator_losses(partial(call, "D_A"), partial(call, "D_B"), a, b, fake_a, fake_b)
        return {"d_loss": total, **parts}, ()

    def sync(self) -> None:
        """Make the Keras variables current (JAX keeps the training state outside them)."""
        self.steps.sync()

    def current_lr(self) -> float:
        """Learning rate of the next step (the schedule at the optimizer's iteration count)."""
        self.steps.sync()
        return float(ops.convert_to_numpy(self.opt_g.learning_rate))

    def train_step(self, a: np.ndarray, b: np.ndarray) -> dict[str, float]:
        """One G+F update, then one D_A+D_B update on pooled fakes; returns the losses."""
        g_logs, (fake_a, fake_b) = self.steps("generators", a, b)
        d_logs, _ = self.steps("discriminators", a, b, self.pool_a.query(fake_a), self.pool_b.query(fake_b))
        return {**g_logs, **d_logs}

    def translate(self, cine: np.ndarray, batch_size: int = 16) -> np.ndarray:
        """Cine ROI slices (N, 128, 128) -> fake LGE (N, 128, 128) in [0, 1], not renormalised."""
        return _translate(self.export_generator(), cine, batch_size)

    def export_generator(self) -> keras.Model:
        """``G`` on 128x128 inputs (a U-Net trained on crops is rebuilt at full size with its weights)."""
        self.steps.sync()
        if self.cfg.generator == "resnet" or self.cfg.crop_size == ROI:
            return self.G
        full = build_generator(self.cfg, "g_cine2lge", ROI)
        full.set_weights(self.G.get_weights())
        return full

    def checkpoint(self, folder: Path) -> gan_run.Checkpoint:
        return gan_run.Checkpoint(folder, CHECKPOINT_LAYOUT, self.nets, {"opt_g": self.opt_g, "opt_d": self.opt_d},
                          self.steps)

    def save_checkpoint(self, folder: Path, epoch: int) -> None:
        """Nets, optimizers, image pools and their random generators after ``epoch``."""
        pools = {"pool_a": self.pool_a.state(), "pool_b": self.pool_b.state()}
        self.checkpoint(folder).save(epoch, {"pool_rng": {k: p["rng"] for k, p in pools.items()}},
                                     {"state.npz": {f"{k}_images": p["images"] for k, p in pools.items()}})

    def load_checkpoint(self, folder: Path) -> int:
        """Restore what :meth:`save_checkpoint` wrote; returns the last completed epoch."""
        epoch, state, arrays = self.checkpoint(folder).restore()
        for k, pool in (("pool_a", self.pool_a), ("pool_b", self.pool_b)):
            pool.restore(arrays["state.npz"][f"{k}_images"], state["pool_rng"][k])
        return epoch


def _translate(model: Callable[..., Any], cine: np.ndarray, batch_size: int = 16) -> np.ndarray:
    return gan_run.run_generator(model, np.asarray(cine, np.float32), lambda x: to_gan_range(x)[..., None], batch_size)


def load_generator(folder: str | Path) -> Callable[[np.ndarray], np.ndarray]:
    """The run's cine -> LGE generator as a function.

    Parameters
    ----------
    folder: str | pathlib.Path
        A ``cyclegan-train`` run folder.

    Returns
    -------
    Callable[[numpy.ndarray], numpy.ndarray]
        Normalised cine ROI slices (N, 128, 128) -> fake LGE (N, 128, 128) float32, each image
        ``pp.normalize_intensity``-normalised; it raises ``ValueError`` for other shapes.

    Raises
    ------
    FileNotFoundError
        If the folder has no ``generator.keras``.
    """
    path = Path(folder) / NET_FILES["G"]
    if not path.exists():
        raise FileNotFoundError(f"no {NET_FILES['G']} in {folder}")
    model = keras.saving.load_model(path, compile=False)

    def generate(cine: np.ndarray) -> np.ndarray:
        cine = np.asarray(cine, np.float32)
        if cine.ndim != 3 or cine.shape[1:] != (ROI, ROI):
            raise ValueError(f"cine must be (N, {ROI}, {ROI}), got {cine.shape}")
        return normalise_each(_translate(model, cine))

    return generate


def held_out_similarity(fake_lge: np.ndarray, real_lge: np.ndarray) -> dict[str, float | int]:
    """PSNR/SSIM (``image_metrics.paired_similarity``) of fakes against the real LGE of the same
    slices, both normalised per image (the real ones with ``CineLgeSlices.per_image("lge")``)."""
    from pipeline.synth.image_metrics import paired_similarity

    return paired_similarity(np.asarray(fake_lge, np.float32), np.asarray(real_lge, np.float32))


def run_versions() -> dict[str, str]:
    return {**gan_run.versions(), "time": time.strftime("%Y-%m-%d %H:%M:%S")}


# ------------------------------------------------------------------------------------------
# Training run
# ------------------------------------------------------------------------------------------
def resume_config(out: Path, overrides: dict[str, Any]) -> CycleGANConfig:
    """Settings of the run in ``out`` (its gan.json) with ``overrides`` applied.

    Raises
    ------
    ValueError
        If an override changes a setting of ``ARCH_KEYS`` (the checkpoint's nets would not fit).
    """
    saved = CycleGANConfig.from_dict(gan_run.read_gan_json(out, KIND)["settings"])
    gan_run.check_resumable(asdict(saved), overrides, ARCH_KEYS)
    return CycleGANConfig.from_dict({**asdict(saved), **overrides})


def train(cfg: CycleGANConfig, out: str | Path, data_dir: str | Path | None = None, resume: bool = False,
          progress: bool = True, slices: Any = None) -> dict[str, Any]:
    """Train a CycleGAN into the run folder ``out``, or continue the one there.

    Each epoch writes ``checkpoints/``, ``generator.keras``, ``gan.json``, ``history.json``,
    ``curves.png``, ``samples.png`` and ``MODEL_CARD.md``; the last one also the other nets.

    Parameters
    ----------
    cfg: CycleGANConfig
        Settings (on resume: from :func:`resume_config`).
    out: str | pathlib.Path
        Run folder.
    data_dir: str | pathlib.Path | None
        Shared data root or the MyoPS folder.
    resume: bool
        Continue after the last checkpoint (a missing checkpoint starts afresh, with a warning).
    progress: bool
        Progress bars.
    slices: cine_slices.CineLgeSlices | None
        Slices to use instead of loading MyoPS.

    Returns
    -------
    dict[str, Any]
        The final gan.json content.
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
    if resume and model.checkpoint(ckpt).exists():
        start = model.load_checkpoint(ckpt)
        if (out / "history.json").exists():
            history = [e for e in read_gan_history(out) if e["epoch"] <= start]
        log.info("resumed after epoch %d", start)
    elif resume:
        log.warning("--resume: no checkpoint in %s, starting from scratch", ckpt)

    sampler = UnpairedSampler(train_set.cine, train_set.lge, cfg)
    held_real = held.per_image("lge")
    baseline = held_out_similarity(held.per_image("cine"), held_real) if len(held) >= 1 else None
    meta = _gan_meta(cfg, slices, train_set, held, baseline)
    fake: dict[str, np.ndarray | None] = {"held": None}

    def validate(epoch: int) -> dict[str, float]:
        scores = {"lr": model.current_lr()}
        if len(held):
            fake["held"] = normalise_each(model.translate(held.cine))
            sim = held_out_similarity(fake["held"], held_real)
            scores.update(val_psnr=sim["psnr_mean"], val_ssim=sim["ssim_mean"])
        return scores

    def end_epoch(entry: dict[str, Any]) -> None:
        history.append(entry)
        epoch = entry["epoch"]
        model.save_checkpoint(ckpt, epoch)
        gan_run.save_model(model.export_generator(), out / NET_FILES["G"])
        meta.update(epochs_done=epoch, status="training" if epoch < cfg.epochs else "done", last_epoch=entry,
                    versions=run_versions())
        _write_run_files(out, meta, history, held, fake["held"])

    gan_run.train_epochs(lambda epoch, index: model.train_step(*sampler.batch(epoch, index)), start + 1, cfg.epochs,
                 cfg.steps_per_epoch, validate, end_epoch, progress=progress, desc="cyclegan",
                 postfix=lambda m: {"D": f"{m['d_loss']:.3f}", "G": f"{m['g_adv']:.3f}", "cyc": f"{m['cycle']:.3f}"})
    if not history or history[-1]["epoch"] < cfg.epochs:
        return meta
    model.sync()
    for k in ("F", "D_A", "D_B"):
        gan_run.save_model(model.nets[k], out / NET_FILES[k])
    meta["status"] = "done"
    _write_run_files(out, meta, history, held, normalise_each(model.translate(held.cine)) if len(held) else None)
    return meta


def read_gan_history(out: Path) -> list[dict[str, Any]]:
    """The epochs of a run's history.json."""
    return list(json.loads((Path(out) / "history.json").read_text())["epochs"])


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
        "versions": run_versions(),
    }


CURVES = (Panel("adversarial (LSGAN)", ("d_cine", "d_lge", "g_adv")),
          Panel("cycle / identity L1", ("cycle", "identity")),
          Panel("held-out: fake vs real LGE (PSNR dB, SSIM right)", ("val_psnr",), right=("val_ssim",)))


def _write_run_files(out: Path, meta: dict[str, Any], history: list[dict[str, Any]], held: Any,
                     fake: np.ndarray | None) -> None:
    gan_run.write_json(out / "history.json", {"epochs": history})
    gan_run.write_json(out / "gan.json", meta)
    plot_history(history, out / "curves.png", CURVES)
    if fake is not None and len(held):
        k = np.unique(np.linspace(0, len(held) - 1, min(MAX_SAMPLES, len(held))).round().astype(int))
        image_grid([Column("cine (input)", held.cine[k]), Column("fake LGE", fake[k]),
                    Column("real LGE", held.per_image("lge")[k], contours=held.masks[k])],
                   out / "samples.png", [f"{held.case_ids[i]} s{int(held.slice_index[i])}" for i in k], vmax=1.2)
    (out / "MODEL_CARD.md").write_text(cyclegan_card(meta, history))


# ------------------------------------------------------------------------------------------
# Generation: the synthetic source (fake LGE + carried-over gd masks)
# ------------------------------------------------------------------------------------------
def generate(generator_dir: str | Path, out: str | Path, data_dir: str | Path | None = None,
             held_out: bool = False, include_unlabelled: bool = False, progress: bool = True,
             slices: Any = None, batch_size: int = 16) -> dict[str, Any]:
    """Fake LGE of labelled MyoPS cine slices, paired with their ground-truth masks.

    Writes ``out/pairs.npz`` (``images``, ``masks``, ``cine``, ``case_ids``, ``slice_index``; with
    ``held_out`` also ``real``), ``pairs.json`` and ``pairs.png``; with ``include_unlabelled`` also
    ``unlabelled.npz`` (fake LGE of the unlabelled training cases, no masks).

    Parameters
    ----------
    generator_dir: str | pathlib.Path
        A ``cyclegan-train`` run folder.
    out: str | pathlib.Path
        Output folder.
    data_dir: str | pathlib.Path | None
        Shared data root or the MyoPS folder.
    held_out: bool
        Translate the run's held-out cases instead of its training cases, and add paired PSNR/SSIM.
    include_unlabelled: bool
        Also write ``unlabelled.npz``.
    progress: bool
        Progress bars.
    slices: cine_slices.CineLgeSlices | None
        Slices to use instead of loading MyoPS.
    batch_size: int
        Slices per forward pass.

    Returns
    -------
    dict[str, Any]
        The pairs.json content.

    Raises
    ------
    ValueError
        If the folder holds another kind of GAN, or there is no labelled slice to translate.
    FileNotFoundError
        If gan.json or generator.keras is missing.
    """
    from pipeline.synth import cine_slices as cs

    gdir, out = Path(generator_dir), Path(out)
    meta = gan_run.read_gan_json(gdir, KIND)
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
    fake = gan_run.in_batches(fn, labelled.cine, batch_size, progress, "cine->LGE")
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
        "images": "fake LGE, pp.normalize_intensity per image", "versions": run_versions()}
    if held_out:
        arrays["real"] = labelled.per_image("lge")
        info["paired_fake_vs_real"] = held_out_similarity(fake, arrays["real"])
        info["paired_cine_vs_real_baseline"] = held_out_similarity(labelled.per_image("cine"), arrays["real"])
    np.savez_compressed(out / "pairs.npz", **arrays)
    if include_unlabelled and not held_out:
        unl = train_set.select(~train_set.labelled)
        if len(unl):
            np.savez_compressed(out / "unlabelled.npz", images=gan_run.in_batches(fn, unl.cine, batch_size, progress,
                                                                          "unlabelled"),
                                cine=unl.cine, case_ids=np.asarray(unl.case_ids))
            info["unlabelled"] = {"n": len(unl), "file": "unlabelled.npz", "cases": unl.cases}
    k = np.unique(np.linspace(0, len(fake) - 1, min(8, len(fake))).round().astype(int))
    cols = [Column("cine", labelled.cine[k]), Column("fake LGE", fake[k]),
            Column("fake LGE + mask", fake[k], contours=labelled.masks[k])]
    if held_out:
        cols.append(Column("real LGE", arrays["real"][k]))
    image_grid(cols, out / "pairs.png", [f"{labelled.case_ids[i]} s{int(labelled.slice_index[i])}" for i in k],
               vmax=1.2)
    gan_run.write_json(out / "pairs.json", info)
    return info
