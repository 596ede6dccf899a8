"""Training runs: the LV localiser (stage 1) and the segmenter (stage 2), per CV fold.

A run folder is a weights folder that ``models.segment`` can use directly:

    RUN_DIR/
      segmenter.keras       best segmenter (highest validation mean foreground Dice)
      localiser.keras       best localiser (lowest validation loss)
      segmenter.onnx, localiser.onnx   ONNX exports (serving runtime; ``--no-export-onnx``
                            skips them, the .keras files are the reference)
      model.json            what models.segment needs (format of ``models.segment.ModelInfo``)
      train_config.json     every setting, the fold's case lists, class weights, versions
      history.json          segmenter: per-epoch logs, ms/step, learning rate
      history_localiser.json
      curves.png            segmenter loss and Dice curves (train and validation)
      curves_localiser.png
      checkpoints/          raw Keras checkpoints (with optimizer state; best and last)

``--fold all`` writes one such folder per fold: RUN_DIR/fold0 ... RUN_DIR/fold4.
``--fold full`` trains on every case (no validation: fixed epochs, last epoch kept) for the
shipped model, after CV has fixed the number of epochs.

Decision: the localiser is trained by the same command (``--task both``, the default), before
the segmenter and on the same fold split, so every fold folder is a complete two-stage model
and CV evaluation measures the real pipeline (localisation errors included). ``--task
segmenter`` / ``--task localiser`` train one stage only (e.g. to retrain the segmenter while
keeping a localiser: copy ``localiser.keras`` into the run folder first).
"""

from __future__ import annotations

import json
import logging
import os
import platform
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

SEGMENTER_FILE = "segmenter.keras"
LOCALISER_FILE = "localiser.keras"
TASKS = ("both", "segmenter", "localiser")


@dataclass
class TrainConfig:
    out: Path
    data_dir: str | None = None
    fold: int | None = 0  # None: train on all cases without validation ("full")
    folds_file: Path | None = None
    task: str = "both"
    epochs: int = 200
    steps_per_epoch: int = 100
    batch_size: int = 16
    base_filters: int = 16
    depth: int = 4
    dropout: float = 0.1
    learning_rate: float = 1e-3
    patience: int = 40
    seed: int = 0
    localiser_epochs: int | None = None  # default: min(epochs, 60)
    localiser_steps: int | None = None  # default: steps_per_epoch
    dice_weight: float = 1.0
    class_weights: str = "auto"  # "auto" | "none" | comma-separated 5 numbers
    slices_per_case: int = 4
    p_lesion_slice: float = 0.5
    limit_cases: int | None = None  # tiny subsets for smoke tests
    workers: int = 1
    verbose: int = 1
    export_onnx: bool = True
    synthetic: list[str] = field(default_factory=list)  # pairs.npz files mixed into batches
    synthetic_fraction: float = 0.25  # of each segmenter batch, when ``synthetic`` is set
    myops: bool = True  # add the folds' MyoPS volumes (real geometry) to training and validation
    myops_share: float = 0.3  # of the case draws in a batch, when MyoPS cases are present
    localiser_cine: bool = True  # also train the localiser on the MyoPS bSSFP (C0) images
    lr_schedule: str = "poly"  # "poly" (nnU-Net: lr0 * (1 - e/E)^0.9) | "plateau"
    resume: bool = False  # continue from checkpoints/<stage>_last.keras and the history
    extra: dict[str, object] = field(default_factory=dict)


def train(cfg: TrainConfig) -> Path:
    """Train the configured stage(s) of one fold (or all cases); returns the run folder."""
    import keras
    from tqdm import tqdm

    from models import preprocess as pp
    from pipeline.datasets import emidec, folds, myops
    from pipeline.train.data import prepare_case, prepare_myops_case

    if cfg.task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}")
    out = Path(cfg.out)
    (out / "checkpoints").mkdir(parents=True, exist_ok=True)

    all_ids = emidec.list_cases(cfg.data_dir)
    folds_doc = None
    if cfg.fold is None:
        train_ids, val_ids = all_ids, []
        if cfg.myops:
            folds_doc = folds.load_or_create(cfg.folds_file, cfg.data_dir)
    else:
        folds_doc = folds.load_or_create(cfg.folds_file, cfg.data_dir)
        train_ids, val_ids = folds.split(folds_doc, cfg.fold)
        missing = sorted(set(train_ids + val_ids) - set(all_ids))
        if missing:
            raise ValueError(f"folds file lists cases absent from the data: {missing[:5]}")
    train_myops, val_myops = (folds.split_myops(folds_doc, cfg.fold)
                              if cfg.myops and folds_doc is not None else ([], []))
    if cfg.myops and folds_doc is not None and not (train_myops or val_myops):
        if folds._myops_scar_if_present(cfg.data_dir):
            raise ValueError("the folds file has no MyoPS assignment: run `lgenode pipeline "
                             "folds --force` (or train with --no-myops)")
        log.warning("no labelled MyoPS data: training on EMIDEC only")
    if cfg.limit_cases:
        train_ids = _subset(train_ids, cfg.limit_cases)
        val_ids = _subset(val_ids, max(1, cfg.limit_cases // 2)) if val_ids else []
        train_myops, val_myops = train_myops[:1], val_myops[:1]

    def load(ids: list[str], what: str):
        return [prepare_case(emidec.load_case(c, cfg.data_dir))
                for c in tqdm(ids, desc=f"loading {what} cases", unit="case", leave=False)]

    def load_myops(ids: list[str], what: str, image: str = "LGE"):
        out = []
        for c in tqdm(ids, desc=f"loading {what} MyoPS cases", unit="case", leave=False):
            try:
                out.append(prepare_myops_case(myops.load_case(c, cfg.data_dir), image,
                                              cfg.data_dir))
            except FileNotFoundError as exc:
                if image == "LGE":
                    raise
                log.warning("%s", exc)  # cine images are optional extras for the localiser
        return out

    train_cases = load(train_ids, "training") + load_myops(train_myops, "training")
    val_cases = load(val_ids, "validation") + load_myops(val_myops, "validation")
    localiser_extra = (load_myops(train_myops, "training cine", "C0")
                       if cfg.localiser_cine and cfg.task in ("both", "localiser") else [])
    settings = {
        **{k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(cfg).items()},
        "keras_backend": keras.backend.backend(),
        "keras_version": keras.__version__,
        "python": platform.python_version(),
        "roi_size": pp.ROI_SIZE,
        "localiser_size": pp.LOCALISER_SIZE,
        "target_spacing_mm": pp.TARGET_SPACING_MM,
        "folds_seed": folds_doc.get("seed") if folds_doc else None,
        "train_cases": train_ids + train_myops,
        "val_cases": val_ids + val_myops,
    }
    if cfg.task in ("both", "localiser"):
        settings["localiser"] = train_localiser(cfg, train_cases + localiser_extra, val_cases,
                                                out)
    if cfg.task in ("both", "segmenter"):
        settings["segmenter"] = train_segmenter(cfg, train_cases, val_cases, out)
    cfg_path = out / "train_config.json"
    if cfg_path.exists():  # a later single-stage run keeps the other stage's record
        previous = json.loads(cfg_path.read_text())
        settings = {**{k: previous[k] for k in ("localiser", "segmenter") if k in previous},
                    **settings}
    cfg_path.write_text(json.dumps(settings, indent=1, default=str) + "\n")
    write_model_json(out, cfg)
    if cfg.export_onnx:
        export_onnx(out)
    return out


def train_folds(cfg: TrainConfig, fold_ids: list[int]) -> list[Path]:
    """Train several folds one after the other into RUN_DIR/fold{k}."""
    runs = []
    for k in fold_ids:
        sub = TrainConfig(**{**asdict(cfg), "fold": k, "out": Path(cfg.out) / f"fold{k}"})
        log.info("fold %d -> %s", k, sub.out)
        runs.append(train(sub))
    return runs


def _subset(ids: list[str], n: int) -> list[str]:
    """n cases spread over the sorted list (mixes normal and pathological cases)."""
    if n >= len(ids):
        return list(ids)
    idx = np.linspace(0, len(ids) - 1, n).round().astype(int)
    return [ids[i] for i in sorted(set(idx))]


def _class_weights(spec: str, train_cases) -> list[float]:
    from pipeline.train.data import class_frequencies, class_weights_from_frequencies

    if spec == "none":
        return [1.0] * 5
    if spec == "auto":
        return [float(w) for w in class_weights_from_frequencies(class_frequencies(train_cases))]
    vals = [float(v) for v in spec.split(",")]
    if len(vals) != 5:
        raise ValueError("--class-weights needs 5 comma-separated numbers, 'auto' or 'none'")
    return vals


def poly_learning_rate(lr0: float, epochs: int, exponent: float = 0.9):
    """nnU-Net's schedule: ``lr0 * (1 - epoch / epochs) ** exponent`` (epoch counted from 0)."""
    def schedule(epoch: int, lr: float | None = None) -> float:
        return float(lr0 * max(0.0, 1.0 - epoch / max(epochs, 1)) ** exponent)
    return schedule


def _resume_state(out: Path, stem: str, monitor: str, mode: str
                  ) -> tuple[list[dict[str, object]], float | None]:
    """(epochs already in the history file, best monitored value so far) of a stage."""
    suffix = "" if stem == "segmenter" else f"_{stem}"
    path = out / f"history{suffix}.json"
    if not path.exists():
        return [], None
    epochs = list(json.loads(path.read_text()).get("epochs", []))
    vals = [float(e[monitor]) for e in epochs if e.get(monitor) is not None]
    best = (max(vals) if mode == "max" else min(vals)) if vals else None
    return epochs, best


def _fit(build_model, train_ds, val, cfg: TrainConfig, epochs: int, out: Path, stem: str,
         monitor: str, mode: str, title: str, extra: dict[str, object]) -> dict[str, object]:
    """model.fit with checkpoints, LR schedule, early stopping (plateau schedule only),
    history/curves and resume; keeps the best.

    ``build_model()`` returns a new compiled model; with ``cfg.resume`` and a last checkpoint
    of this stage, training continues from it instead (weights, optimizer state, epoch count,
    history; batches are a function of (seed, epoch, index) and so continue where they were).
    """
    import keras

    import pipeline.train.losses  # noqa: F401 - custom objects for loading checkpoints
    from pipeline.train.callbacks import HistoryWriter, NonFiniteStop

    ckpt_dir = out / "checkpoints"
    best_ckpt = ckpt_dir / f"{stem}_best.keras"
    last_ckpt = ckpt_dir / f"{stem}_last.keras"
    if val is None:  # no validation ("full"): select on the training metric, no early stop
        monitor = monitor.removeprefix("val_")
    suffix = "" if stem == "segmenter" else f"_{stem}"
    history = HistoryWriter(out / f"history{suffix}.json", out / f"curves{suffix}.png",
                            title=title, extra=extra)
    initial_epoch, best_so_far = 0, None
    if cfg.resume and last_ckpt.exists():
        done, best_so_far = _resume_state(out, stem, monitor, mode)
        model = keras.saving.load_model(str(last_ckpt))
        history.epochs = done
        initial_epoch = len(done)
        log.info("%s: resuming after epoch %d of %d (best %s %s)", stem, initial_epoch, epochs,
                 monitor, best_so_far)
        keras.utils.set_random_seed(cfg.seed + 1000 * initial_epoch + (stem != "segmenter"))
    else:
        model = build_model()
    # Counted on the network actually trained (resumed or new), into the history and the summary.
    n_params = int(model.count_params())
    history.extra["params"] = n_params
    if hasattr(train_ds, "epoch"):
        train_ds.epoch = initial_epoch
    nonfinite = NonFiniteStop()
    callbacks: list[keras.callbacks.Callback] = [
        keras.callbacks.ModelCheckpoint(str(best_ckpt), monitor=monitor, mode=mode,
                                        save_best_only=True,
                                        initial_value_threshold=best_so_far),
        keras.callbacks.ModelCheckpoint(str(last_ckpt)),
        history,
        nonfinite,
    ]
    if cfg.lr_schedule == "poly":
        callbacks.insert(0, keras.callbacks.LearningRateScheduler(
            poly_learning_rate(cfg.learning_rate, epochs)))
    elif cfg.lr_schedule == "plateau":
        callbacks.append(keras.callbacks.ReduceLROnPlateau(
            monitor=monitor, mode=mode, factor=0.5, patience=max(2, cfg.patience // 3),
            min_lr=1e-5, verbose=0))
        if val is not None:
            callbacks.append(keras.callbacks.EarlyStopping(monitor=monitor, mode=mode,
                                                           patience=cfg.patience))
    else:
        raise ValueError(f"unknown lr_schedule {cfg.lr_schedule!r} (poly or plateau)")
    if initial_epoch < epochs:
        model.fit(train_ds, validation_data=val, epochs=epochs, initial_epoch=initial_epoch,
                  callbacks=callbacks, verbose=cfg.verbose)
    src = best_ckpt if best_ckpt.exists() else last_ckpt
    final = out / (SEGMENTER_FILE if stem == "segmenter" else LOCALISER_FILE)
    _save_inference_copy(src, final)
    vals = [e.get(monitor) for e in history.epochs if e.get(monitor) is not None]
    best = (max(vals) if mode == "max" else min(vals)) if vals else None
    return {"monitor": monitor, "best": best, "epochs_run": len(history.epochs),
            "best_epoch": (1 + [e.get(monitor) for e in history.epochs].index(best))
            if best is not None else None,
            "stopped_non_finite": bool(getattr(nonfinite, "stopped", False)),
            "ms_per_step_median": _median([e.get("ms_per_step") for e in history.epochs]),
            "resumed_from_epoch": initial_epoch or None,
            "lr_schedule": cfg.lr_schedule,
            "params": n_params,
            "file": final.name}


def _median(vals) -> float | None:
    v = [float(x) for x in vals if x is not None]
    return float(np.median(v)) if v else None


def _save_inference_copy(src: Path, dst: Path) -> None:
    """Re-save a checkpoint without optimizer state or compile config (the custom loss and
    metrics live in ``pipeline``; the inference side must load the file with stock Keras)."""
    import keras

    import pipeline.train.losses  # noqa: F401 - registers the custom objects for loading

    model = keras.saving.load_model(str(src), compile=False)
    tmp = dst.with_suffix(".tmp.keras")
    model.save(str(tmp))
    os.replace(tmp, dst)
    stale = dst.with_suffix(".onnx")  # an export of the previous weights would be served
    if stale.exists():
        stale.unlink()


def train_segmenter(cfg: TrainConfig, train_cases, val_cases, out: Path) -> dict[str, object]:
    import keras

    from models import preprocess as pp
    from models.networks import build_segmenter
    from pipeline.augment import AugmentConfig
    from pipeline.train.data import SegmenterBatches, segmenter_validation
    from pipeline.train.losses import WeightedCEDiceLoss, segmenter_metrics
    from pipeline.train.synthetic import SyntheticPool

    keras.utils.set_random_seed(cfg.seed)
    weights = _class_weights(cfg.class_weights, train_cases)

    def build():
        model = build_segmenter(input_shape=(pp.ROI_SIZE, pp.ROI_SIZE, 1),
                                n_classes=pp.N_CLASSES, base_filters=cfg.base_filters,
                                depth=cfg.depth, dropout=cfg.dropout)
        model.compile(optimizer=keras.optimizers.Adam(cfg.learning_rate),
                      loss=WeightedCEDiceLoss(weights, dice_weight=cfg.dice_weight),
                      metrics=segmenter_metrics())
        return model

    aug = AugmentConfig()
    pool = SyntheticPool.load(synthetic_paths(cfg)) if cfg.synthetic else None
    train_ds = SegmenterBatches(train_cases, cfg.batch_size, cfg.steps_per_epoch, aug,
                                seed=cfg.seed, slices_per_case=cfg.slices_per_case,
                                p_lesion_slice=cfg.p_lesion_slice, synthetic=pool,
                                synthetic_fraction=cfg.synthetic_fraction,
                                myops_share=cfg.myops_share, workers=cfg.workers)
    synthetic_info = ({**pool.describe(), "fraction": cfg.synthetic_fraction,
                       "per_batch": train_ds.n_synthetic} if pool is not None else None)
    val = segmenter_validation(val_cases) if val_cases else None
    fold = "all cases" if cfg.fold is None else f"fold {cfg.fold}"
    info = _fit(build, train_ds, val, cfg, cfg.epochs, out, "segmenter", "val_dice", "max",
                f"segmenter, {fold}", {"task": "segmenter", "class_weights": weights,
                                       "augment": aug.to_dict(),
                                       "synthetic": synthetic_info})
    return {**info, "class_weights": weights, "synthetic": synthetic_info}


def train_localiser(cfg: TrainConfig, train_cases, val_cases, out: Path) -> dict[str, object]:
    import keras

    from models import preprocess as pp
    from models.networks import build_localiser
    from pipeline.train.data import LOCALISER_AUGMENT, LocaliserBatches, localiser_validation
    from pipeline.train.losses import BCEDiceLoss, BinaryPooledDice

    keras.utils.set_random_seed(cfg.seed + 1)

    def build():
        model = build_localiser(input_shape=(pp.LOCALISER_SIZE, pp.LOCALISER_SIZE, 1))
        model.compile(optimizer=keras.optimizers.Adam(cfg.learning_rate), loss=BCEDiceLoss(),
                      metrics=[BinaryPooledDice(name="dice")])
        return model

    epochs = cfg.localiser_epochs if cfg.localiser_epochs is not None else min(cfg.epochs, 60)
    steps = cfg.localiser_steps or cfg.steps_per_epoch
    train_ds = LocaliserBatches(train_cases, cfg.batch_size, steps, LOCALISER_AUGMENT,
                                seed=cfg.seed, slices_per_case=cfg.slices_per_case,
                                myops_share=cfg.myops_share, workers=cfg.workers)
    val = localiser_validation(val_cases) if val_cases else None
    fold = "all cases" if cfg.fold is None else f"fold {cfg.fold}"
    info = _fit(build, train_ds, val, cfg, epochs, out, "localiser", "val_loss", "min",
                f"LV localiser, {fold}", {"task": "localiser",
                                          "augment": LOCALISER_AUGMENT.to_dict()})
    return info


def synthetic_paths(cfg: TrainConfig) -> list[str]:
    """``--synthetic`` paths with ``{fold}`` filled in: a per-fold synthetic set must not have
    seen the fold's validation cases (simulator ``--exclude-fold K``, generators likewise)."""
    tag = "full" if cfg.fold is None else str(cfg.fold)
    return [str(p).replace("{fold}", tag) for p in cfg.synthetic]


def write_model_json(out: Path, cfg: TrainConfig) -> Path:
    """``model.json`` in the format ``models.segment.read_model_info`` reads (stems of the network
    files, the preprocessing constants the weights were trained with), plus training facts."""
    import datetime

    from models import preprocess as pp

    fold = "full" if cfg.fold is None else f"fold{cfg.fold}"
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    doc = {
        "name": "lgenode-lge-att-res-unet",
        "version": f"{stamp}-{fold}",
        "segmenter": Path(SEGMENTER_FILE).stem,
        "localiser": Path(LOCALISER_FILE).stem if (out / LOCALISER_FILE).exists() else None,
        "roi_size": pp.ROI_SIZE,
        "target_spacing_mm": pp.TARGET_SPACING_MM,
        "n_classes": pp.N_CLASSES,
        "labels": {"0": "background", "1": "LV cavity", "2": "normal myocardium",
                   "3": "infarct", "4": "no-reflow (MVO)"},
        "licence": "CC BY-NC-SA 4.0 (inherited from the EMIDEC training data); research use "
                   "only, not for diagnosis",
        "training": {"data": "EMIDEC PNG" + (" + MyoPS 2020 LGE" if cfg.myops else ""),
                     "fold": cfg.fold, "lr_schedule": cfg.lr_schedule, "base_filters": cfg.base_filters,
                     "depth": cfg.depth, "seed": cfg.seed},
    }
    p = out / "model.json"
    p.write_text(json.dumps(doc, indent=1) + "\n")
    return p


def export_onnx(out: Path) -> list[Path]:
    """Export the run's .keras networks to ONNX next to them (models.runtime.export_onnx: under
    TensorFlow, in a subprocess when this process runs JAX). Failures are logged, not raised:
    the .keras files remain the reference and can be exported later."""
    from models.runtime import export_onnx as _export

    done = []
    for name in (SEGMENTER_FILE, LOCALISER_FILE):
        src = out / name
        if src.exists():
            try:
                done.append(_export(src, src.with_suffix(".onnx")))
            except Exception as exc:  # noqa: BLE001 - keep the trained weights whatever happens
                log.warning("ONNX export of %s failed: %s", src, exc)
    return done


def copy_weights(run: Path, dst: Path) -> None:
    """Copy the inference files of a run (not checkpoints/history) to ``dst``."""
    dst.mkdir(parents=True, exist_ok=True)
    names = (SEGMENTER_FILE, LOCALISER_FILE, "segmenter.onnx", "localiser.onnx", "model.json")
    for name in names:
        if (run / name).exists():
            shutil.copy2(run / name, dst / name)
