"""pix2pix: label mask -> LGE image on the 128x128 LV-centred ROI (Isola et al. 2017), on the GAN kit.

The generator is ``gan_layers.build_unet_generator`` on the one-hot mask (5 channels, dropout on
the three innermost decoder levels); the discriminator is a PatchGAN on mask one-hot + image.
Both are updated from one forward pass per step (Adam, BCE adversarial loss + ``l1_lambda`` x
class-weighted L1).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import keras
import numpy as np
from keras import ops

from pipeline.synth import gan_run
from pipeline.synth.gan_cards import pix2pix_card
from pipeline.synth.gan_figures import Column, Panel, image_grid, plot_history
from pipeline.synth.gan_layers import build_patch_discriminator, build_unet_generator, to_gan_range
from pipeline.synth.gan_steps import NetCall, Step, Update, make_steps

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
CHECKPOINT_LAYOUT = gan_run.CheckpointLayout(
    nets={"generator": GENERATOR_FILE, "discriminator": DISCRIMINATOR_FILE},
    optimizers={"g": ("g_opt.npz", "arr_{i}"), "d": ("d_opt.npz", "arr_{i}")},
    state=STATE_FILE)
LICENCE = ("EMIDEC (CC BY-NC-SA 4.0): the weights are a derived work for non-commercial research "
           "use only, shared alike.")
# Settings that must match when resuming (the others, e.g. epochs, may change).
_ARCH_KEYS = ("base_filters", "depth", "disc_filters", "disc_layers", "norm", "dropout", "batch_size",
              "seed", "exclude_fold", "augment", "class_weights", "l1_lambda", "limit_cases")


@dataclass
class Pix2PixConfig:
    """Settings of a pix2pix run (saved as ``settings`` in gan.json and the checkpoint).

    ``exclude_fold`` K leaves fold K's validation cases out of training; they become the
    held-out samples and ``val_l1``. ``p_lesion_slice`` is the probability of drawing a slice with
    infarct or no-reflow. ``augment`` ``"dihedral"`` applies one of the 8 flips/rotations to mask
    and image; ``"none"`` keeps the data's orientation (which the mask simulator assumes).
    ``inference_dropout`` is the default of :func:`load_generator`.
    """

    out: Path
    data_dir: str | None = None
    exclude_fold: int | None = None
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


def _settings(cfg: Pix2PixConfig) -> dict[str, object]:
    d = asdict(cfg)
    d["out"] = str(cfg.out)
    d["folds_file"] = str(cfg.folds_file) if cfg.folds_file else None
    d["class_weights"] = list(cfg.class_weights)
    return d


# ------------------------------------------------------------------------------------------
# Encoding and losses
# ------------------------------------------------------------------------------------------
def one_hot(masks: np.ndarray) -> np.ndarray:
    """(N, H, W) labels 0-4 -> (N, H, W, 5) float32.

    Raises
    ------
    ValueError
        If a label is outside 0-4.
    """
    m = np.asarray(masks)
    if m.min(initial=0) < 0 or m.max(initial=0) >= N_CLASSES:
        raise ValueError(f"mask labels must lie in 0..{N_CLASSES - 1}")
    return np.eye(N_CLASSES, dtype=np.float32)[m.astype(np.int64)]


def pixel_weights(masks: np.ndarray, class_weights: tuple[float, ...] = SEED_CLASS_WEIGHTS) -> np.ndarray:
    """(N, H, W) labels -> (N, H, W, 1) float32 per-pixel L1 weights ``class_weights[label]``.

    Raises
    ------
    ValueError
        Unless there are five positive weights.
    """
    w = np.asarray(class_weights, dtype=np.float32)
    if w.shape != (N_CLASSES,) or np.any(w <= 0):
        raise ValueError(f"need {N_CLASSES} positive class weights")
    return w[np.asarray(masks).astype(np.int64)][..., None]


def weighted_l1(real: Any, fake: Any, weights: Any) -> Any:
    """Weighted mean absolute error ``sum(w * |fake - real|) / sum(w)`` over the batch.

    With equal weights it is the ordinary L1, so ``l1_lambda`` keeps its pix2pix meaning, while
    one no-reflow pixel still counts as much as 90 background pixels (a plain mean of
    ``w * |fake - real|`` would scale lambda by the batch's mean weight).
    """
    return ops.sum(weights * ops.abs(fake - real)) / ops.maximum(ops.sum(weights), 1e-8)


def bce_logits(logits: Any, target: float) -> Any:
    """Mean binary cross-entropy of a logit map against a constant label (1 real, 0 fake)."""
    labels = ops.ones_like(logits) * target
    return ops.mean(ops.binary_crossentropy(labels, logits, from_logits=True))


def pix2pix_objective(l1_lambda: float) -> Callable[..., tuple[dict[str, Any], tuple[Any, ...]]]:
    """The step objective on a batch (condition one-hot, real image, L1 weights).

    D: ``0.5 * (BCE(D(m, real), 1) + BCE(D(m, G(m)), 0))``; G: ``BCE(D(m, G(m)), 1) + l1_lambda *
    weighted_l1``. Scalars: ``d_loss``, ``g_loss``, ``g_adv``, ``g_l1`` and the plain ``l1``.
    """

    def objective(call: NetCall, cond: Any, real: Any, weights: Any) -> tuple[dict[str, Any], tuple[Any, ...]]:
        fake = call("generator", cond)
        d_real = call("discriminator", ops.concatenate([cond, real], axis=-1))
        d_fake = call("discriminator", ops.concatenate([cond, fake], axis=-1))
        g_adv = bce_logits(d_fake, 1.0)
        g_l1 = weighted_l1(real, fake, weights)
        return {"d_loss": 0.5 * (bce_logits(d_real, 1.0) + bce_logits(d_fake, 0.0)), "g_loss": g_adv + l1_lambda * g_l1,
                "g_adv": g_adv, "g_l1": g_l1, "l1": ops.mean(ops.abs(fake - real))}, ()

    return objective


# ------------------------------------------------------------------------------------------
# Data
# ------------------------------------------------------------------------------------------
@dataclass
class SlicePairs:
    """ROI slices and their label masks, with the case of each slice."""

    images: np.ndarray  # (N, 128, 128) float32, pp.normalize_intensity per case ROI stack
    masks: np.ndarray  # (N, 128, 128) uint8
    case_ids: list[str]  # per slice

    @property
    def lesion(self) -> np.ndarray:
        """Indices of the slices with infarct or no-reflow."""
        return np.flatnonzero((self.masks >= 3).reshape(len(self.masks), -1).any(axis=1))


def load_pairs(case_ids: list[str], data_dir: str | None, progress: bool = True) -> SlicePairs:
    """EMIDEC cases cut to the ROI around the ground-truth LV centre, normalised over each case's
    ROI stack (``emidec.load_roi_slices``: the segmenter's input convention)."""
    from pipeline.datasets import emidec

    images, masks, ids = emidec.load_roi_slices(case_ids, data_dir, progress)
    return SlicePairs(images, masks, ids)


def dihedral(a: np.ndarray, k: int, flip: bool) -> np.ndarray:
    """One of the 8 symmetries of the square on (H, W, ...) arrays."""
    a = np.rot90(a, k, axes=(0, 1))
    return a[:, ::-1] if flip else a


def make_batch(pairs: SlicePairs, cfg: Pix2PixConfig, epoch: int, index: int
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A training batch, a pure function of (``cfg.seed``, ``epoch``, ``index``).

    Slices are drawn uniformly, except that with probability ``cfg.p_lesion_slice`` a lesion slice
    is drawn; ``cfg.augment`` transforms mask and image together.

    Returns
    -------
    tuple[numpy.ndarray, numpy.ndarray, numpy.ndarray]
        Condition one-hot (B, H, W, 5), real image in [-1, 1] (B, H, W, 1), L1 weights (B, H, W, 1).
    """
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
    """``n`` slice indices spread over the set, half of them (if any) with a lesion; the same every
    epoch, for the sample grid and the validation L1."""
    n = min(n, len(pairs.masks))
    lesion = pairs.lesion
    k = min(len(lesion), n // 2)
    pick = list(lesion[np.linspace(0, len(lesion) - 1, k).round().astype(int)]) if k else []
    rest = np.setdiff1d(np.arange(len(pairs.masks)), pick)
    pick += list(rest[np.linspace(0, len(rest) - 1, n - k).round().astype(int)]) if n - k else []
    return np.array(sorted({int(i) for i in pick}), dtype=int)


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


# ------------------------------------------------------------------------------------------
# Models and update step
# ------------------------------------------------------------------------------------------
def build_models(cfg: Pix2PixConfig) -> tuple[keras.Model, keras.Model]:
    """(generator, discriminator) as configured."""
    g = build_unet_generator(N_CLASSES, 1, cfg.base_filters, cfg.depth, cfg.norm, "generator",
                             dropout=cfg.dropout)
    d = build_patch_discriminator(N_CLASSES + 1, cfg.disc_filters, cfg.disc_layers, cfg.norm,
                                  "discriminator")
    return g, d


def make_optimizer(cfg: Pix2PixConfig) -> keras.optimizers.Optimizer:
    return keras.optimizers.Adam(cfg.learning_rate, beta_1=cfg.beta_1)


class Pix2PixTrainer:
    """Generator, discriminator, their optimizers and the compiled update step.

    Parameters
    ----------
    generator, discriminator: keras.Model
        The nets (from :func:`build_models`).
    g_opt, d_opt: keras.optimizers.Optimizer
        Their optimizers.
    l1_lambda: float
        Weight of the class-weighted L1 term.

    Raises
    ------
    RuntimeError
        If the Keras backend is neither TensorFlow nor JAX.
    """

    def __init__(self, generator: keras.Model, discriminator: keras.Model, g_opt: keras.optimizers.Optimizer,
                 d_opt: keras.optimizers.Optimizer, l1_lambda: float) -> None:
        self.g, self.d, self.g_opt, self.d_opt = generator, discriminator, g_opt, d_opt
        self.l1_lambda = float(l1_lambda)
        self.backend = keras.backend.backend()
        self.nets = {"generator": generator, "discriminator": discriminator}
        self.steps = make_steps(self.nets, {"train": Step(pix2pix_objective(self.l1_lambda), (
            Update("g_loss", ("generator",), g_opt), Update("d_loss", ("discriminator",), d_opt)))})

    def step(self, cond: np.ndarray, real: np.ndarray, weights: np.ndarray) -> dict[str, float]:
        """One update of G and D; returns ``d_loss``, ``g_adv``, ``g_l1`` and ``l1``."""
        logs, _ = self.steps("train", cond, real, weights)
        logs.pop("g_loss")  # g_adv + l1_lambda * g_l1; not part of the history
        return logs

    def sync(self) -> None:
        """Make the Keras variables current (before saving or evaluating)."""
        self.steps.sync()

    def reload_state(self) -> None:
        """Take the training state from the Keras variables again (after restoring weights)."""
        self.steps.reload()

    def checkpoint(self, folder: Path) -> gan_run.Checkpoint:
        return gan_run.Checkpoint(folder, CHECKPOINT_LAYOUT, self.nets, {"g": self.g_opt, "d": self.d_opt}, self.steps)


def predict(generator: Callable[..., Any], masks: np.ndarray, batch_size: int = 16) -> np.ndarray:
    """Generator on label masks (N, H, W) -> images (N, H, W) float32 in [0, 1], not renormalised."""
    return gan_run.run_generator(generator, masks, one_hot, batch_size)


# ------------------------------------------------------------------------------------------
# Training run
# ------------------------------------------------------------------------------------------
def train(cfg: Pix2PixConfig, resume: bool = False, progress: bool = True) -> Path:
    """Train pix2pix into the generator folder ``cfg.out``, or continue the run there.

    Every epoch writes ``checkpoints/`` (G, D, both optimizers, random generators, ``state.json``
    with the history), then ``generator.keras``, ``discriminator.keras``, ``history.json``,
    ``curves.png``, ``samples.png``, ``gan.json`` and ``MODEL_CARD.md``. Samples come from the
    held-out cases when a fold is excluded, else from fixed training slices.

    Parameters
    ----------
    cfg: Pix2PixConfig
        Settings.
    resume: bool
        Continue after the last checkpointed epoch, up to ``cfg.epochs``.
    progress: bool
        Progress bars.

    Returns
    -------
    pathlib.Path
        The generator folder.

    Raises
    ------
    FileExistsError
        If the folder holds a run and ``resume`` is off.
    ValueError
        On an unknown ``augment``, no training cases, or settings that differ from the checkpoint's.
    """
    if cfg.augment not in AUGMENTS:
        raise ValueError(f"augment must be one of {AUGMENTS}")
    out = Path(cfg.out)
    ckpt = out / CHECKPOINT_DIR
    if (ckpt / STATE_FILE).exists() and not resume:
        raise FileExistsError(f"{out} already holds a pix2pix run: pass resume=True (--resume) or another folder")
    ckpt.mkdir(parents=True, exist_ok=True)

    train_ids, held_ids = split_cases(cfg)
    if not train_ids:
        raise ValueError("no training cases")
    train_pairs = load_pairs(train_ids, cfg.data_dir, progress)
    held_pairs = load_pairs(held_ids, cfg.data_dir, progress) if held_ids else None
    sample_src = held_pairs if held_pairs is not None else train_pairs
    sample_idx = fixed_slices(sample_src, cfg.n_samples)
    val_idx = fixed_slices(held_pairs, cfg.n_val) if held_pairs is not None else None

    keras.utils.set_random_seed(cfg.seed)
    g, d = build_models(cfg)
    trainer = Pix2PixTrainer(g, d, make_optimizer(cfg), make_optimizer(cfg), cfg.l1_lambda)
    checkpoint = trainer.checkpoint(ckpt)
    history: list[dict[str, Any]] = []
    start = 0
    if checkpoint.exists():
        gan_run.check_resumable(checkpoint.read_state()["settings"], _settings(cfg), _ARCH_KEYS)
        start, state, _ = checkpoint.restore()
        history = list(state["history"])
        log.info("resuming after epoch %d", start)

    doc: dict[str, Any] = {
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
        "versions": gan_run.versions(),
        "licence": LICENCE,
    }

    def write_outputs() -> None:
        _write_outputs(out, trainer, history, doc, sample_src, sample_idx)

    def validate(epoch: int) -> dict[str, float]:
        if val_idx is None or held_pairs is None:
            return {}
        trainer.sync()
        return _validation(g, held_pairs, val_idx, cfg)

    def end_epoch(entry: dict[str, Any]) -> None:
        history.append(entry)
        checkpoint.save(entry["epoch"], {"history": history, "settings": _settings(cfg)})
        write_outputs()

    if start >= cfg.epochs:
        log.info("nothing to do: %d epochs already trained", start)
    # Batches are numbered by the 0-based epoch, as in the runs this layout was first written by.
    gan_run.train_epochs(lambda epoch, index: trainer.step(*make_batch(train_pairs, cfg, epoch - 1, index)), start + 1,
                 cfg.epochs, cfg.steps_per_epoch, validate, end_epoch, progress=progress, desc="pix2pix",
                 postfix=lambda m: {"d": f"{m['d_loss']:.3f}", "adv": f"{m['g_adv']:.3f}", "l1": f"{m['g_l1']:.4f}"})
    if not (out / GENERATOR_FILE).exists() or start >= cfg.epochs:
        write_outputs()
    return out


def _validation(g: keras.Model, pairs: SlicePairs, idx: np.ndarray, cfg: Pix2PixConfig) -> dict[str, float]:
    """Weighted and plain L1 (in [-1, 1] units) of G (inference mode, no dropout) on held-out slices."""
    fake = 2.0 * predict(g, pairs.masks[idx]) - 1.0
    real = to_gan_range(pairs.images[idx])
    w = pixel_weights(pairs.masks[idx], cfg.class_weights)[..., 0]
    return {"val_g_l1": float(ops.convert_to_numpy(weighted_l1(real, fake, w))),
            "val_l1": float(np.mean(np.abs(fake - real)))}


CURVES = (Panel("adversarial (BCE)", ("d_loss", "g_adv")),
          Panel("L1 in [-1, 1] units (g_l1: class-weighted)", ("g_l1", "l1", "val_g_l1", "val_l1")),
          Panel("ms/step (median)", ("ms_per_step",)))


def _mask_grid(masks: np.ndarray, real: np.ndarray | None, fake: np.ndarray, path: Path, title: str) -> Path:
    cols = [Column("mask", masks, labels=True)] + ([Column("real", real)] if real is not None else [])
    return image_grid(cols + [Column("generated", fake)], path, title=title)


def _write_outputs(out: Path, trainer: Pix2PixTrainer, history: list[dict[str, Any]], doc: dict[str, Any],
                   sample_src: SlicePairs, sample_idx: np.ndarray) -> None:
    trainer.sync()
    gan_run.save_model(trainer.g, out / GENERATOR_FILE)
    gan_run.save_model(trainer.d, out / DISCRIMINATOR_FILE)
    gan_run.write_json(out / "history.json", {"kind": KIND, "epochs": history})
    plot_history(history, out / "curves.png", CURVES)
    epoch = history[-1]["epoch"] if history else 0
    _mask_grid(sample_src.masks[sample_idx], np.clip(sample_src.images[sample_idx], 0, 1),
               predict(trainer.g, sample_src.masks[sample_idx]), out / "samples.png",
               f"pix2pix after epoch {epoch} ({doc['sample_slices']['source']} slices)")
    doc = {**doc, "epochs_trained": int(epoch),
           "ms_per_step_median": float(np.median([e["ms_per_step"] for e in history])) if history else None,
           "final": {k: v for k, v in (history[-1] if history else {}).items() if k != "epoch"}}
    gan_run.write_json(out / "gan.json", doc)
    (out / "MODEL_CARD.md").write_text(pix2pix_card(doc))


# ------------------------------------------------------------------------------------------
# Inference
# ------------------------------------------------------------------------------------------
def _with_inference_dropout(model: keras.Model, seed: int) -> keras.Model:
    """Clone of ``model`` whose Dropout layers stay active at inference (seeded), weights copied."""
    counter = iter(range(10**6))

    class AlwaysDropout(keras.layers.Dropout):
        def call(self, inputs, training=None):  # type: ignore[no-untyped-def]
            return super().call(inputs, training=True)

    def clone(layer: keras.layers.Layer) -> keras.layers.Layer:
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
    """A trained generator folder as a function of label masks.

    pix2pix keeps dropout on at test time as its only source of randomness; batch normalisation
    uses its moving statistics.

    Parameters
    ----------
    folder: str | os.PathLike[str]
        Folder written by :func:`train` (``generator.keras``, optionally ``gan.json``).
    dropout: bool | None
        Dropout at inference; None takes gan.json's ``inference_dropout`` (default on). With
        dropout the output is a seeded draw: same seed and call sequence, same images.
    seed: int
        Seed of the dropout layers.
    batch_size: int
        Masks per forward pass.

    Returns
    -------
    Callable[[numpy.ndarray], numpy.ndarray]
        Masks (N, 128, 128) uint8 0-4 -> images (N, 128, 128) float32, each passed through
        ``pp.normalize_intensity``; it raises ``ValueError`` for other shapes.

    Raises
    ------
    ValueError
        If gan.json names another kind of GAN.
    """
    from models import preprocess as pp

    folder = Path(folder)
    meta = gan_run.read_gan_json(folder, KIND, required=False)
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
    """The ``masks`` array of a simulate output (masks.npz) or any pairs.npz (or their folder).

    Raises
    ------
    ValueError
        If there is no ``masks`` array or it is not (N, H, W) with labels 0-4.
    """
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
    """Synthesise an image for every mask of ``masks_path``.

    Writes ``out/pairs.npz`` (``images``, ``masks``), ``pairs.json`` and ``preview.png``.

    Parameters
    ----------
    generator_dir: str | os.PathLike[str]
        Folder written by :func:`train`.
    masks_path: str | os.PathLike[str]
        ``masks.npz``, a ``pairs.npz`` or their folder (see :func:`read_masks`).
    out: str | os.PathLike[str]
        Output folder.
    seed, batch_size, dropout:
        As in :func:`load_generator`.
    n_preview: int
        Rows of preview.png.
    progress: bool
        Progress bar.

    Returns
    -------
    pathlib.Path
        The ``pairs.npz`` path.
    """
    masks = read_masks(masks_path)
    gen = load_generator(generator_dir, dropout=dropout, seed=seed, batch_size=batch_size)
    imgs = gan_run.in_batches(gen, masks, batch_size, progress, "generate")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out / "pairs.npz", images=imgs, masks=masks)
    meta = gan_run.read_gan_json(generator_dir, KIND, required=False)
    gan_run.write_json(out / "pairs.json", {
        "source": KIND, "generator": str(Path(generator_dir).resolve()), "masks": str(Path(masks_path).resolve()),
        "seed": seed, "n": len(masks),
        "inference_dropout": meta.get("inference_dropout", True) if dropout is None else bool(dropout),
        "generator_train_cases": meta.get("train_cases"), "generator_settings": meta.get("settings"),
        "label_counts": np.bincount(masks.ravel(), minlength=N_CLASSES).tolist(),
        "images": "pp.normalize_intensity per image",
    })
    k = min(n_preview, len(masks))
    if k:
        _mask_grid(masks[:k], None, np.clip(imgs[:k], 0, 1), out / "preview.png", "pix2pix")
    return out / "pairs.npz"
