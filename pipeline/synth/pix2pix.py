"""pix2pix: label mask -> LGE image on the 128x128 LV-centred ROI (Isola et al. 2017).

Model: ``gan_layers.build_unet_generator`` (one-hot mask, 5 channels -> 1 channel, tanh, dropout
0.5 on the three innermost decoder levels) and ``gan_layers.build_patch_discriminator`` on the
concatenation mask one-hot + image (6 channels) -> a 16x16 map of logits.

Losses (``keras.ops`` only, so they run under TensorFlow and JAX):

* D: 0.5 * (BCE(D(m, real), 1) + BCE(D(m, G(m)), 0)), the 0.5 slowing D down as in pix2pix.
* G: BCE(D(m, G(m)), 1) + lambda * weighted L1, lambda = 100.
* Weighted L1 (``weighted_l1``): per-pixel weights w[label] (background 1, cavity 7, myocardium
  11, infarct 26, no-reflow 90, the seed project's values) and the *weighted mean*
  sum(w * |G - real|) / sum(w) over the batch. Choice: the plain "mean of w * |G - real|" scales
  the L1 term by the mean weight of the batch (about 2-4 in these ROIs, varying with how much
  lesion a batch holds), which silently changes lambda; the weighted mean equals the ordinary
  L1 when all weights are equal, so lambda = 100 keeps the meaning it has in pix2pix while the
  relative weights still make one no-reflow pixel count 90 background pixels.

Data: development EMIDEC cases (``--exclude-fold K`` leaves fold K's validation cases out),
each case cut to the 128x128 ROI around the ground-truth LV centre and normalised over its ROI
stack with ``models.preprocess.preprocess_training_stack`` (the segmenter's input convention),
then mapped to [-1, 1] (``gan_layers.to_gan_range``). Batches are a pure function of (seed,
epoch, index): slices are drawn uniformly, except that with probability ``p_lesion_slice`` a
slice with infarct or no-reflow is drawn (the rare classes are what the synthetic data is for),
and ``augment="dihedral"`` applies one of the 8 flips/90-degree rotations to mask and image
together. Trade-off: the anatomy around the LV (RV, chest wall) is not in the mask; where the
training slices share an orientation, rotations make the generator less sure where to put it (a
blurrier surround); ``augment="none"`` keeps the data's orientation (the mask simulator assumes
anterior up, septum left).

Update step per backend (chosen by ``keras.backend.backend()``): TensorFlow uses one
``tf.GradientTape`` over both losses; JAX uses ``stateless_call`` + ``jax.value_and_grad`` +
``optimizer.stateless_apply`` in one jitted function. Both update G and D from the same forward
pass (D's weights before its update), Adam 2e-4, beta_1 0.5.

Inference (``load_generator``): pix2pix keeps dropout on at test time as its only source of
randomness; ``dropout=True`` (the default recorded in gan.json) does the same with seeded
dropout layers, while batch normalisation uses its moving statistics. ``dropout=False`` gives
one deterministic image per mask.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from pipeline.synth.gan_layers import from_gan_range, to_gan_range

log = logging.getLogger(__name__)

KIND = "pix2pix"
N_CLASSES = 5
CLASS_NAMES = ("background", "cavity", "myocardium", "infarct", "no-reflow")
SEED_CLASS_WEIGHTS = (1.0, 7.0, 11.0, 26.0, 90.0)
AUGMENTS = ("dihedral", "none")
GENERATOR_FILE = "generator.keras"
DISCRIMINATOR_FILE = "discriminator.keras"
CHECKPOINT_DIR = "checkpoints"
STATE_FILE = "state.json"
LICENCE = ("EMIDEC (CC BY-NC-SA 4.0): the weights are a derived work for non-commercial research "
           "use only, shared alike.")


@dataclass
class Pix2PixConfig:
    out: Path
    data_dir: str | None = None
    exclude_fold: int | None = None  # leave fold K's validation cases out (they become held-out samples)
    folds_file: Path | None = None
    epochs: int = 30
    steps_per_epoch: int = 100
    batch_size: int = 8
    base_filters: int = 32  # generator
    depth: int = 5  # generator levels: 128 -> 4 at the bottleneck
    disc_filters: int = 32
    disc_layers: int = 3  # 70x70 receptive field, 16x16 logits
    norm: str = "batch"
    dropout: float = 0.5
    learning_rate: float = 2e-4
    beta_1: float = 0.5
    l1_lambda: float = 100.0
    class_weights: tuple[float, ...] = SEED_CLASS_WEIGHTS
    p_lesion_slice: float = 0.5
    augment: str = "dihedral"
    n_samples: int = 8  # rows of samples.png
    n_val: int = 64  # held-out slices for val_l1 (only with exclude_fold)
    seed: int = 0
    limit_cases: int | None = None  # smoke tests
    inference_dropout: bool = True
    extra: dict[str, object] = field(default_factory=dict)


# ------------------------------------------------------------------------------------------
# Encoding and losses
# ------------------------------------------------------------------------------------------

def one_hot(masks: np.ndarray) -> np.ndarray:
    """(N, H, W) labels 0-4 -> (N, H, W, 5) float32."""
    m = np.asarray(masks)
    if m.min(initial=0) < 0 or m.max(initial=0) >= N_CLASSES:
        raise ValueError(f"mask labels must lie in 0..{N_CLASSES - 1}")
    return np.eye(N_CLASSES, dtype=np.float32)[m.astype(np.int64)]


def pixel_weights(masks: np.ndarray, class_weights: tuple[float, ...] = SEED_CLASS_WEIGHTS) -> np.ndarray:
    """(N, H, W) labels -> (N, H, W, 1) float32 per-pixel L1 weights w[label]."""
    w = np.asarray(class_weights, dtype=np.float32)
    if w.shape != (N_CLASSES,) or np.any(w <= 0):
        raise ValueError(f"need {N_CLASSES} positive class weights")
    return w[np.asarray(masks).astype(np.int64)][..., None]


def weighted_l1(real, fake, weights):
    """sum(w * |fake - real|) / sum(w): the weighted mean absolute error (see module docstring)."""
    from keras import ops

    return ops.sum(weights * ops.abs(fake - real)) / ops.maximum(ops.sum(weights), 1e-8)


def bce_logits(logits, target: float):
    """Mean binary cross-entropy of a logit map against a constant label (1 real, 0 fake)."""
    from keras import ops

    labels = ops.ones_like(logits) * target
    return ops.mean(ops.binary_crossentropy(labels, logits, from_logits=True))


# ------------------------------------------------------------------------------------------
# Data
# ------------------------------------------------------------------------------------------

@dataclass
class SlicePairs:
    images: np.ndarray  # (N, 128, 128) float32, pp.normalize_intensity per case ROI stack
    masks: np.ndarray  # (N, 128, 128) uint8
    case_ids: list[str]  # per slice

    @property
    def lesion(self) -> np.ndarray:
        return np.flatnonzero((self.masks >= 3).reshape(len(self.masks), -1).any(axis=1))


def load_pairs(case_ids: list[str], data_dir: str | None, progress: bool = True) -> SlicePairs:
    """EMIDEC cases -> ROI slice pairs with the segmenter's preprocessing (ground-truth centre)."""
    from pipeline.datasets import emidec

    images, masks, ids = emidec.load_roi_slices(case_ids, data_dir, progress)
    return SlicePairs(images, masks, ids)


def dihedral(a: np.ndarray, k: int, flip: bool) -> np.ndarray:
    """One of the 8 symmetries of the square on (H, W, ...) arrays."""
    a = np.rot90(a, k, axes=(0, 1))
    return a[:, ::-1] if flip else a


def make_batch(pairs: SlicePairs, cfg: Pix2PixConfig, epoch: int, index: int
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(condition one-hot (B,H,W,5), real in [-1,1] (B,H,W,1), L1 weights (B,H,W,1)); a pure
    function of (seed, epoch, index)."""
    rng = np.random.default_rng([cfg.seed, epoch, index])
    lesion = pairs.lesion
    xs, ys = [], []
    for _ in range(cfg.batch_size):
        if lesion.size and rng.random() < cfg.p_lesion_slice:
            i = int(rng.choice(lesion))
        else:
            i = int(rng.integers(len(pairs.masks)))
        x, y = pairs.images[i], pairs.masks[i]
        if cfg.augment == "dihedral":
            k, flip = int(rng.integers(4)), bool(rng.random() < 0.5)
            x, y = dihedral(x, k, flip), dihedral(y, k, flip)
        xs.append(x)
        ys.append(y)
    y = np.stack(ys)
    return one_hot(y), to_gan_range(np.stack(xs))[..., None], pixel_weights(y, cfg.class_weights)


def fixed_slices(pairs: SlicePairs, n: int) -> np.ndarray:
    """n slice indices spread over the set, half of them (if any) with a lesion: the same every
    epoch, for the sample grid and the validation L1."""
    n = min(n, len(pairs.masks))
    lesion = pairs.lesion
    k = min(len(lesion), n // 2)
    pick = list(lesion[np.linspace(0, len(lesion) - 1, k).round().astype(int)]) if k else []
    rest = np.setdiff1d(np.arange(len(pairs.masks)), pick)
    pick += list(rest[np.linspace(0, len(rest) - 1, n - k).round().astype(int)]) if n - k else []
    return np.array(sorted({int(i) for i in pick}), dtype=int)


# ------------------------------------------------------------------------------------------
# Models and update steps
# ------------------------------------------------------------------------------------------

def build_models(cfg: Pix2PixConfig):  # -> (generator, discriminator)
    from pipeline.synth.gan_layers import (
        build_patch_discriminator,
        build_unet_generator,
    )

    g = build_unet_generator(N_CLASSES, 1, cfg.base_filters, cfg.depth, cfg.norm, "generator",
                             dropout=cfg.dropout)
    d = build_patch_discriminator(N_CLASSES + 1, cfg.disc_filters, cfg.disc_layers, cfg.norm,
                                  "discriminator")
    return g, d


def make_optimizer(cfg: Pix2PixConfig):
    import keras

    return keras.optimizers.Adam(cfg.learning_rate, beta_1=cfg.beta_1)


class Pix2PixTrainer:
    """Holds G, D and their optimizers; ``step`` runs one update and returns the losses."""

    def __init__(self, generator, discriminator, g_opt, d_opt, l1_lambda: float):
        import keras

        self.g, self.d, self.g_opt, self.d_opt = generator, discriminator, g_opt, d_opt
        self.l1_lambda = float(l1_lambda)
        self.g_opt.build(self.g.trainable_variables)
        self.d_opt.build(self.d.trainable_variables)
        self.backend = keras.backend.backend()
        if self.backend == "tensorflow":
            self._step = self._tf_step()
        elif self.backend == "jax":
            self._step = self._jax_step()
        else:
            raise RuntimeError(f"pix2pix training supports the tensorflow and jax backends, not {self.backend}")

    def step(self, cond: np.ndarray, real: np.ndarray, weights: np.ndarray) -> dict[str, float]:
        from keras import ops

        out = self._step(cond, real, weights)
        return {k: float(ops.convert_to_numpy(v)) for k, v in out.items()}

    def sync(self) -> None:
        """Write the JAX training state back into the Keras variables (before saving/evaluating)."""
        if self.backend != "jax":
            return
        g_tv, g_ntv, d_tv, d_ntv, g_ov, d_ov = self._state
        for vs, vals in ((self.g.trainable_variables, g_tv), (self.g.non_trainable_variables, g_ntv),
                         (self.d.trainable_variables, d_tv), (self.d.non_trainable_variables, d_ntv),
                         (self.g_opt.variables, g_ov), (self.d_opt.variables, d_ov)):
            for v, a in zip(vs, vals):
                v.assign(a)

    def reload_state(self) -> None:
        """Re-read the Keras variables into the JAX state (after restoring a checkpoint)."""
        if self.backend == "jax":
            self._state = self._read_state()

    # -- TensorFlow -------------------------------------------------------------------------
    def _tf_step(self):
        import tensorflow as tf
        from keras import ops

        g, d, g_opt, d_opt, lam = self.g, self.d, self.g_opt, self.d_opt, self.l1_lambda

        @tf.function(reduce_retracing=True)
        def step(cond, real, weights):
            with tf.GradientTape(persistent=True) as tape:
                fake = g(cond, training=True)
                d_real = d(ops.concatenate([cond, real], axis=-1), training=True)
                d_fake = d(ops.concatenate([cond, fake], axis=-1), training=True)
                d_loss = 0.5 * (bce_logits(d_real, 1.0) + bce_logits(d_fake, 0.0))
                g_adv = bce_logits(d_fake, 1.0)
                g_l1 = weighted_l1(real, fake, weights)
                g_loss = g_adv + lam * g_l1
            g_grads = tape.gradient(g_loss, g.trainable_variables)
            d_grads = tape.gradient(d_loss, d.trainable_variables)
            del tape
            g_opt.apply_gradients(zip(g_grads, g.trainable_variables))
            d_opt.apply_gradients(zip(d_grads, d.trainable_variables))
            return {"d_loss": d_loss, "g_adv": g_adv, "g_l1": g_l1,
                    "l1": ops.mean(ops.abs(fake - real))}

        return step

    # -- JAX --------------------------------------------------------------------------------
    def _read_state(self):
        return ([v.value for v in self.g.trainable_variables], [v.value for v in self.g.non_trainable_variables],
                [v.value for v in self.d.trainable_variables], [v.value for v in self.d.non_trainable_variables],
                [v.value for v in self.g_opt.variables], [v.value for v in self.d_opt.variables])

    def _jax_step(self):
        import jax
        from keras import ops

        g, d, g_opt, d_opt, lam = self.g, self.d, self.g_opt, self.d_opt, self.l1_lambda

        def g_loss_fn(g_tv, g_ntv, d_tv, d_ntv, cond, real, weights):
            fake, g_ntv = g.stateless_call(g_tv, g_ntv, cond, training=True)
            d_fake, _ = d.stateless_call(d_tv, d_ntv, ops.concatenate([cond, fake], axis=-1), training=True)
            g_adv = bce_logits(d_fake, 1.0)
            g_l1 = weighted_l1(real, fake, weights)
            return g_adv + lam * g_l1, (g_ntv, fake, g_adv, g_l1)

        def d_loss_fn(d_tv, d_ntv, cond, real, fake):
            d_real, d_ntv = d.stateless_call(d_tv, d_ntv, ops.concatenate([cond, real], axis=-1), training=True)
            d_fake, d_ntv = d.stateless_call(d_tv, d_ntv, ops.concatenate([cond, fake], axis=-1), training=True)
            return 0.5 * (bce_logits(d_real, 1.0) + bce_logits(d_fake, 0.0)), d_ntv

        @jax.jit
        def jstep(state, cond, real, weights):
            g_tv, g_ntv, d_tv, d_ntv, g_ov, d_ov = state
            (_, (g_ntv_new, fake, g_adv, g_l1)), g_grads = jax.value_and_grad(g_loss_fn, has_aux=True)(
                g_tv, g_ntv, d_tv, d_ntv, cond, real, weights)
            fake = jax.lax.stop_gradient(fake)
            (d_loss, d_ntv_new), d_grads = jax.value_and_grad(d_loss_fn, has_aux=True)(
                d_tv, d_ntv, cond, real, fake)
            g_tv, g_ov = g_opt.stateless_apply(g_ov, g_grads, g_tv)
            d_tv, d_ov = d_opt.stateless_apply(d_ov, d_grads, d_tv)
            metrics = {"d_loss": d_loss, "g_adv": g_adv, "g_l1": g_l1, "l1": ops.mean(ops.abs(fake - real))}
            return (g_tv, g_ntv_new, d_tv, d_ntv_new, g_ov, d_ov), metrics

        self._state = self._read_state()

        def step(cond, real, weights):
            self._state, metrics = jstep(self._state, cond, real, weights)
            return metrics

        return step


def predict(generator, masks: np.ndarray, batch_size: int = 16) -> np.ndarray:
    """Generator on label masks (N, H, W) -> images in [0, 1] (N, H, W) float32 (no renormalisation)."""
    from keras import ops

    out = []
    for s in range(0, len(masks), batch_size):
        y = generator(one_hot(masks[s:s + batch_size]), training=False)
        out.append(from_gan_range(ops.convert_to_numpy(y)[..., 0]))
    return np.concatenate(out) if out else np.zeros((0,) + masks.shape[1:], np.float32)


# ------------------------------------------------------------------------------------------
# Training run
# ------------------------------------------------------------------------------------------

def _settings(cfg: Pix2PixConfig) -> dict[str, object]:
    d = asdict(cfg)
    d["out"] = str(cfg.out)
    d["folds_file"] = str(cfg.folds_file) if cfg.folds_file else None
    d["class_weights"] = list(cfg.class_weights)
    return d


# Settings that must match when resuming (the others, e.g. epochs, may change).
_ARCH_KEYS = ("base_filters", "depth", "disc_filters", "disc_layers", "norm", "dropout", "batch_size",
              "seed", "exclude_fold", "augment", "class_weights", "l1_lambda", "limit_cases")


def _versions() -> dict[str, str]:
    import keras

    v = {"keras": keras.__version__, "backend": keras.backend.backend(), "numpy": np.__version__,
         "python": platform.python_version()}
    from importlib import metadata

    for dist in ("tensorflow", "jax"):  # metadata, not import: importing TF under JAX costs seconds
        try:
            v[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    return v


def split_cases(cfg: Pix2PixConfig) -> tuple[list[str], list[str]]:
    """(training case ids, held-out case ids): all development cases, minus fold K's validation
    cases with ``exclude_fold``."""
    from pipeline.datasets import emidec, folds

    all_ids = emidec.list_cases(cfg.data_dir)
    held: list[str] = []
    if cfg.exclude_fold is not None:
        doc = folds.load_folds(cfg.folds_file or folds.DEFAULT_FOLDS_FILE)
        _, held = folds.split(doc, cfg.exclude_fold)
        held = sorted(set(held) & set(all_ids))
    train_ids = [c for c in all_ids if c not in set(held)]
    if cfg.limit_cases:
        step = max(1, len(train_ids) // cfg.limit_cases)
        train_ids = train_ids[::step][: cfg.limit_cases]
        held = held[: max(1, cfg.limit_cases // 2)]
    return train_ids, held


def _save_atomic(model, path: Path) -> None:
    tmp = path.with_name(path.stem + ".tmp.keras")
    model.save(tmp)
    os.replace(tmp, path)


def _save_optimizer(opt, path: Path) -> None:
    import keras

    tmp = path.with_name(path.stem + ".tmp.npz")
    np.savez(tmp, *[keras.ops.convert_to_numpy(v) for v in opt.variables])
    os.replace(tmp, path)


def _load_optimizer(opt, path: Path) -> None:
    with np.load(path) as z:
        vals = [z[f"arr_{i}"] for i in range(len(z.files))]
    if len(vals) != len(opt.variables):
        raise ValueError(f"{path}: {len(vals)} optimizer arrays, expected {len(opt.variables)}")
    for v, a in zip(opt.variables, vals):
        v.assign(a)


def _write_json(path: Path, doc: object) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(doc, indent=1) + "\n")
    os.replace(tmp, path)


def train(cfg: Pix2PixConfig, resume: bool = False, progress: bool = True) -> Path:
    """Train pix2pix; writes the generator folder (see the synthetic-data contract) and returns it.

    Every epoch: checkpoints/ (G, D, both optimizers, state.json with the history), then
    generator.keras, discriminator.keras, history.json, curves.png, samples.png, gan.json and
    MODEL_CARD.md at the top. ``resume`` continues after the last checkpointed epoch.
    """
    import keras
    from tqdm import tqdm

    if cfg.augment not in AUGMENTS:
        raise ValueError(f"augment must be one of {AUGMENTS}")
    out = Path(cfg.out)
    ckpt = out / CHECKPOINT_DIR
    state_path = ckpt / STATE_FILE
    if state_path.exists() and not resume:
        raise FileExistsError(f"{out} already holds a pix2pix run: pass resume=True (--resume) or another folder")
    ckpt.mkdir(parents=True, exist_ok=True)

    train_ids, held_ids = split_cases(cfg)
    if not train_ids:
        raise ValueError("no training cases")
    train_pairs = load_pairs(train_ids, cfg.data_dir, progress)
    held_pairs = load_pairs(held_ids, cfg.data_dir, progress) if held_ids else None
    # Samples: held-out slices when a fold is excluded (a fair look), else fixed training slices.
    sample_src = held_pairs if held_pairs is not None else train_pairs
    sample_idx = fixed_slices(sample_src, cfg.n_samples)
    val_idx = fixed_slices(held_pairs, cfg.n_val) if held_pairs is not None else None

    keras.utils.set_random_seed(cfg.seed)
    g, d = build_models(cfg)
    g_opt, d_opt = make_optimizer(cfg), make_optimizer(cfg)
    trainer = Pix2PixTrainer(g, d, g_opt, d_opt, cfg.l1_lambda)

    history: list[dict[str, object]] = []
    start = 0
    if state_path.exists():
        state = json.loads(state_path.read_text())
        old = state["settings"]
        diff = [k for k in _ARCH_KEYS if old.get(k) != _settings(cfg).get(k)]
        if diff:
            raise ValueError(f"cannot resume: settings differ from the checkpoint in {diff}")
        g.set_weights(keras.models.load_model(ckpt / GENERATOR_FILE, compile=False).get_weights())
        d.set_weights(keras.models.load_model(ckpt / DISCRIMINATOR_FILE, compile=False).get_weights())
        _load_optimizer(g_opt, ckpt / "g_opt.npz")
        _load_optimizer(d_opt, ckpt / "d_opt.npz")
        trainer.reload_state()
        history = list(state["history"])
        start = int(state["epoch"])
        log.info("resuming after epoch %d", start)

    doc = {
        "kind": KIND,
        "settings": _settings(cfg),
        "train_cases": train_ids,
        "held_out_cases": held_ids,
        "n_train_slices": len(train_pairs.masks),
        "sample_slices": {"source": "held-out" if held_pairs is not None else "training",
                          "cases": [sample_src.case_ids[i] for i in sample_idx]},
        "input": "one-hot mask (128, 128, 5): 0 bg, 1 cavity, 2 myocardium, 3 infarct, 4 no-reflow",
        "output": "image (128, 128, 1) in [-1, 1]; load_generator maps it to [0, 1] and applies "
                  "pp.normalize_intensity per image",
        "inference_dropout": cfg.inference_dropout,
        "versions": _versions(),
        "licence": LICENCE,
    }
    if start >= cfg.epochs:
        log.info("nothing to do: %d epochs already trained", start)
    for epoch in range(start, cfg.epochs):
        logs: dict[str, list[float]] = {}
        times: list[float] = []
        bar = tqdm(range(cfg.steps_per_epoch), desc=f"epoch {epoch + 1}/{cfg.epochs}", unit="step",
                   disable=not progress)
        for i in bar:
            cond, real, w = make_batch(train_pairs, cfg, epoch, i)
            t0 = time.perf_counter()
            m = trainer.step(cond, real, w)
            times.append((time.perf_counter() - t0) * 1000.0)
            for k, v in m.items():
                logs.setdefault(k, []).append(v)
            bar.set_postfix(d=f"{m['d_loss']:.3f}", adv=f"{m['g_adv']:.3f}", l1=f"{m['g_l1']:.4f}")
        if not all(np.isfinite(v).all() for v in logs.values()):
            raise FloatingPointError(f"non-finite loss in epoch {epoch + 1}; last good checkpoint kept")
        trainer.sync()
        entry: dict[str, object] = {"epoch": epoch + 1, **{k: float(np.mean(v)) for k, v in logs.items()},
                                    # first step of a run includes tracing/compilation: median
                                    "ms_per_step": float(np.median(times)),
                                    "seconds": float(np.sum(times) / 1000.0)}
        if val_idx is not None and held_pairs is not None:
            entry.update(_validation(g, held_pairs, val_idx, cfg))
        history.append(entry)
        # Checkpoint first (state.json last, so a crash mid-write leaves the previous epoch valid).
        _save_atomic(g, ckpt / GENERATOR_FILE)
        _save_atomic(d, ckpt / DISCRIMINATOR_FILE)
        _save_optimizer(g_opt, ckpt / "g_opt.npz")
        _save_optimizer(d_opt, ckpt / "d_opt.npz")
        _write_json(state_path, {"epoch": epoch + 1, "history": history, "settings": _settings(cfg)})
        _write_outputs(out, g, d, history, doc, sample_src, sample_idx, cfg)
    if not (out / GENERATOR_FILE).exists() or start >= cfg.epochs:
        _write_outputs(out, g, d, history, doc, sample_src, sample_idx, cfg)
    return out


def _validation(g, pairs: SlicePairs, idx: np.ndarray, cfg: Pix2PixConfig) -> dict[str, float]:
    """Weighted and plain L1 (in [-1, 1] units) of G (inference mode, no dropout) on held-out slices."""
    from keras import ops

    fake = 2.0 * predict(g, pairs.masks[idx]) - 1.0
    real = to_gan_range(pairs.images[idx])
    w = pixel_weights(pairs.masks[idx], cfg.class_weights)[..., 0]
    return {"val_g_l1": float(ops.convert_to_numpy(weighted_l1(real, fake, w))),
            "val_l1": float(np.mean(np.abs(fake - real)))}


def _write_outputs(out: Path, g, d, history, doc, sample_src: SlicePairs, sample_idx, cfg) -> None:
    _save_atomic(g, out / GENERATOR_FILE)
    _save_atomic(d, out / DISCRIMINATOR_FILE)
    _write_json(out / "history.json", {"kind": KIND, "epochs": history})
    plot_history(history, out / "curves.png")
    fake = predict(g, sample_src.masks[sample_idx])
    sample_grid(sample_src.masks[sample_idx], np.clip(sample_src.images[sample_idx], 0, 1), fake,
                out / "samples.png", title=f"pix2pix after epoch {history[-1]['epoch'] if history else 0} "
                                           f"({doc['sample_slices']['source']} slices)")
    doc = {**doc, "epochs_trained": int(history[-1]["epoch"]) if history else 0,
           "ms_per_step_median": float(np.median([e["ms_per_step"] for e in history])) if history else None,
           "final": {k: v for k, v in (history[-1] if history else {}).items() if k != "epoch"}}
    _write_json(out / "gan.json", doc)
    (out / "MODEL_CARD.md").write_text(model_card(doc))


# ------------------------------------------------------------------------------------------
# Figures and model card
# ------------------------------------------------------------------------------------------

MASK_COLOURS = np.array([[0, 0, 0], [230, 25, 75], [60, 180, 75], [255, 225, 25], [0, 130, 200]], np.uint8)


def sample_grid(masks: np.ndarray, real: np.ndarray | None, fake: np.ndarray, path: Path,
                title: str = "") -> Path:
    """Rows of mask | real | generated (``real`` None: mask | generated); images in [0, 1]."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = [("mask", None), ("real", real), ("generated", fake)] if real is not None else \
        [("mask", None), ("generated", fake)]
    n = len(masks)
    fig, axes = plt.subplots(n, len(cols), figsize=(2.0 * len(cols), 2.0 * n), squeeze=False)
    for r in range(n):
        for c, (name, arr) in enumerate(cols):
            ax = axes[r, c]
            if arr is None:
                ax.imshow(MASK_COLOURS[masks[r]])
            else:
                ax.imshow(arr[r], cmap="gray", vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(name, fontsize=9)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return Path(path)


def plot_history(history: list[dict[str, object]], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = [e["epoch"] for e in history]

    def s(key: str) -> list[float] | None:
        return [float(e[key]) for e in history] if history and all(key in e for e in history) else None

    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    for key in ("d_loss", "g_adv"):
        if s(key):
            axes[0].plot(x, s(key), marker=".", label=key)
    axes[0].set_title("adversarial (BCE)")
    for key, style in (("g_l1", "-"), ("l1", ":"), ("val_g_l1", "--"), ("val_l1", "-.")):
        if s(key):
            axes[1].plot(x, s(key), style, marker=".", label=key)
    axes[1].set_title("L1 in [-1, 1] units (g_l1: class-weighted)")
    if s("ms_per_step"):
        axes[2].plot(x, s("ms_per_step"), marker=".")
    axes[2].set_title("ms/step (median)")
    for ax in axes:
        ax.set_xlabel("epoch")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return Path(path)


def model_card(doc: dict[str, object]) -> str:
    s = doc["settings"]  # type: ignore[index]
    fin = doc.get("final") or {}
    held = doc.get("held_out_cases") or []
    excl = (f"fold {s['exclude_fold']}'s {len(held)} validation cases were left out (use this generator "  # type: ignore[index]
            f"only for fold {s['exclude_fold']}'s training run or for data that never meets those cases)"
            if s["exclude_fold"] is not None else "no case was held out (do not use it inside a CV fold)")  # type: ignore[index]
    final = ", ".join(f"{k} {v:.4g}" for k, v in fin.items() if isinstance(v, float))  # type: ignore[union-attr]
    return f"""# pix2pix generator: label mask -> LGE image (128x128 LV ROI)

Trained by `lgenode pipeline pix2pix-train` ({', '.join(f'{k} {v}' for k, v in doc['versions'].items())}).

## What it was trained on
* Data: {len(doc['train_cases'])} development EMIDEC cases, {doc['n_train_slices']} short-axis LGE slices
  (EMIDEC, CC BY-NC-SA 4.0); {excl}. Case ids are listed in gan.json.
* Each case cut to the 128x128 ROI around its ground-truth LV centre and normalised over its ROI stack
  (`models.preprocess.preprocess_training_stack`); EMIDEC pixels were stretched to 256x256 by the data
  set, so pixel spacing and aspect ratio are not physical.
* Augmentation: {s['augment']}; lesion slices drawn with probability {s['p_lesion_slice']}.

## Settings
* Generator: U-Net, base {s['base_filters']} filters, depth {s['depth']}, {s['norm']} norm, dropout {s['dropout']}
  (3 innermost decoder levels), tanh. Discriminator: PatchGAN on one-hot mask + image, base
  {s['disc_filters']}, {s['disc_layers']} stride-2 layers.
* Loss: BCE (from logits) + {s['l1_lambda']} x class-weighted L1, weights {s['class_weights']}
  (background, cavity, myocardium, infarct, no-reflow), normalised as a weighted mean
  sum(w|G-real|)/sum(w). Adam lr {s['learning_rate']}, beta_1 {s['beta_1']}.
* {doc.get('epochs_trained')} epochs x {s['steps_per_epoch']} steps, batch {s['batch_size']}, seed {s['seed']};
  median {doc.get('ms_per_step_median') or float('nan'):.0f} ms/step ({doc['versions'].get('backend')}).
* Last epoch: {final or 'n/a'}.

## Use
`pipeline.synth.pix2pix.load_generator(folder)` -> masks (N,128,128) uint8 labels 0-4 -> images
(N,128,128) float32, `pp.normalize_intensity` per image (segmenter input convention). Inference
dropout (pix2pix's only noise) is {'on' if doc.get('inference_dropout') else 'off'} by default.
`lgenode pipeline pix2pix-generate --generator DIR --masks masks.npz --out OUT` writes pairs.npz.

Intended use: research on synthetic augmentation of LGE segmentation training sets (issue 6).
Not for clinical use, diagnosis or any commercial purpose.

## Licence
{LICENCE}

## Limitations
* 2-D, one slice at a time, 128x128 at the segmenter's ROI convention; no through-plane consistency.
* Intensities are relative (normalised per image), not calibrated signal; backgrounds (RV, liver,
  chest wall) are invented from the training distribution and are not conditioned on the mask.
* Small training set: the generator can reproduce training slices closely; realism is not
  established by the training losses (see `lgenode pipeline evaluate-synthesis`).
* Little diversity per mask (dropout only), as in pix2pix.
"""


# ------------------------------------------------------------------------------------------
# Inference
# ------------------------------------------------------------------------------------------

def _with_inference_dropout(model, seed: int):
    """Clone of ``model`` whose Dropout layers stay active at inference (seeded), weights copied."""
    import keras

    counter = iter(range(10**6))

    class AlwaysDropout(keras.layers.Dropout):
        def call(self, inputs, training=None):
            return super().call(inputs, training=True)

    def clone(layer):
        cfg = layer.get_config()
        if isinstance(layer, keras.layers.Dropout):
            cfg["seed"] = int(seed) * 1000 + next(counter)
            return AlwaysDropout.from_config(cfg)
        return layer.__class__.from_config(cfg)

    twin = keras.models.clone_model(model, clone_function=clone)
    twin.set_weights(model.get_weights())
    return twin


def load_generator(folder: str | os.PathLike[str], *, dropout: bool | None = None, seed: int = 0,
                   batch_size: int = 16) -> Callable[[np.ndarray], np.ndarray]:
    """Trained generator folder -> f(masks (N,128,128) uint8 0-4) -> images (N,128,128) float32,
    each passed through ``pp.normalize_intensity`` (the synthetic-data contract).

    ``dropout`` None uses the folder's gan.json ``inference_dropout`` (pix2pix: on); with dropout the
    output is a seeded random draw (same seed, same call sequence, same images).
    """
    import keras

    from models import preprocess as pp

    folder = Path(folder)
    meta = json.loads((folder / "gan.json").read_text()) if (folder / "gan.json").exists() else {}
    if meta.get("kind", KIND) != KIND:
        raise ValueError(f"{folder} holds a {meta.get('kind')} generator, not {KIND}")
    model = keras.models.load_model(folder / GENERATOR_FILE, compile=False)
    use_dropout = meta.get("inference_dropout", True) if dropout is None else bool(dropout)
    if use_dropout and any(isinstance(layer, keras.layers.Dropout) for layer in model.layers):
        model = _with_inference_dropout(model, seed)

    def generate(masks: np.ndarray) -> np.ndarray:
        m = np.asarray(masks)
        if m.ndim != 3 or m.shape[1:] != tuple(model.input_shape[1:3]):
            raise ValueError(f"masks must be (N, {model.input_shape[1]}, {model.input_shape[2]}), got {m.shape}")
        raw = predict(model, m.astype(np.uint8), batch_size)
        return np.stack([pp.normalize_intensity(x) for x in raw]).astype(np.float32) if len(raw) else raw

    return generate


def read_masks(path: str | os.PathLike[str]) -> np.ndarray:
    """The ``masks`` array of a simulate output (masks.npz) or any pairs.npz (or their folder)."""
    p = Path(path)
    if p.is_dir():
        p = next((p / n for n in ("masks.npz", "pairs.npz") if (p / n).exists()), p / "masks.npz")
    with np.load(p) as z:
        if "masks" not in z.files:
            raise ValueError(f"{p} has no 'masks' array")
        m = z["masks"]
    if m.ndim != 3 or m.min(initial=0) < 0 or m.max(initial=0) >= N_CLASSES:
        raise ValueError(f"{p}: masks must be (N, H, W) with labels 0..{N_CLASSES - 1}")
    return m.astype(np.uint8)


def generate_pairs(generator_dir: str | os.PathLike[str], masks_path: str | os.PathLike[str],
                   out: str | os.PathLike[str], seed: int = 0, batch_size: int = 16,
                   dropout: bool | None = None, n_preview: int = 8, progress: bool = True) -> Path:
    """Write OUT/pairs.npz (images, masks), pairs.json and preview.png; returns the npz path."""
    from tqdm import tqdm

    masks = read_masks(masks_path)
    gen = load_generator(generator_dir, dropout=dropout, seed=seed, batch_size=batch_size)
    images = [gen(masks[s:s + batch_size]) for s in tqdm(range(0, len(masks), batch_size), desc="generate",
                                                        unit="batch", disable=not progress)]
    imgs = np.concatenate(images) if images else np.zeros(masks.shape, np.float32)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out / "pairs.npz", images=imgs.astype(np.float32), masks=masks)
    meta = json.loads((Path(generator_dir) / "gan.json").read_text()) if (Path(generator_dir) / "gan.json").exists() else {}
    _write_json(out / "pairs.json", {
        "source": KIND, "generator": str(Path(generator_dir).resolve()), "masks": str(Path(masks_path).resolve()),
        "seed": seed, "n": len(masks),
        "inference_dropout": meta.get("inference_dropout", True) if dropout is None else bool(dropout),
        "generator_train_cases": meta.get("train_cases"), "generator_settings": meta.get("settings"),
        "label_counts": np.bincount(masks.ravel(), minlength=N_CLASSES).tolist(),
        "images": "pp.normalize_intensity per image",
    })
    k = min(n_preview, len(masks))
    if k:
        sample_grid(masks[:k], None, np.clip(imgs[:k], 0, 1), out / "preview.png", title="pix2pix")
    return out / "pairs.npz"
