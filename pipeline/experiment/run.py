"""The synthetic-augmentation experiment: same network, budget and folds; arms differ only by
the synthetic set mixed into the segmenter's batches.

Layout of OUT (re-running skips what is done, so an interrupted experiment resumes):

    OUT/experiment.json            arms, folds, budget (written first; a later run must match)
    OUT/localiser/fold{k}/         one LV localiser per fold, shared by every arm (only the
                                   segmenter is what the arms compare)
    OUT/{arm}/fold{k}/             segmenter run folder (+ the fold's localiser copied in)
    OUT/{arm}/eval/fold{k}/        `evaluate` of that run on fold k's validation cases
    OUT/results.json, results.md, deltas.png   comparison (``pipeline.experiment.report``)
"""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)

BUDGET_KEYS = ("epochs", "steps_per_epoch", "batch_size", "base_filters", "depth", "seed",
               "synthetic_fraction", "learning_rate", "patience", "localiser_epochs")


@dataclass(frozen=True)
class Arm:
    name: str
    synthetic: tuple[str, ...] = ()  # pairs.npz paths, '{fold}' filled per fold

    @classmethod
    def parse(cls, spec: str) -> Arm:
        """'real' or 'NAME=PATH[+PATH...]'."""
        name, _, paths = spec.partition("=")
        name = name.strip()
        if not name or not name.replace("-", "").replace("_", "").isalnum():
            raise ValueError(f"arm name {name!r}: letters, digits, '-' and '_' only")
        files = tuple(p.strip() for p in paths.split("+") if p.strip())
        if paths and not files:
            raise ValueError(f"arm {name!r}: empty synthetic path")
        return cls(name, files)


@dataclass
class ExperimentConfig:
    out: Path
    arms: list[Arm]
    folds: list[int]
    baseline: str = "real"
    data_dir: str | None = None
    folds_file: Path | None = None
    epochs: int = 12
    steps_per_epoch: int = 50
    batch_size: int = 16
    base_filters: int = 16
    depth: int = 4
    learning_rate: float = 1e-3
    patience: int = 40
    seed: int = 0
    synthetic_fraction: float = 0.25
    localiser_epochs: int = 40
    localiser_from: Path | None = None  # RUN/fold{k}/localiser.keras reused instead of training
    n_boot: int = 2000
    workers: int = 1
    verbose: int = 2
    extra: dict[str, object] = field(default_factory=dict)

    def budget(self) -> dict[str, object]:
        b = {k: getattr(self, k) for k in BUDGET_KEYS}
        if self.localiser_from is not None:
            # A reused localiser replaces the trained one: record where it came from, not an
            # epoch count that was never run.
            del b["localiser_epochs"]
            b["localiser_from"] = str(self.localiser_from)
        return b


def check_arms(cfg: ExperimentConfig) -> None:
    from pipeline.train.synthetic import resolve_pairs_path

    names = [a.name for a in cfg.arms]
    if len(set(names)) != len(names):
        raise ValueError(f"arm names must be unique: {names}")
    if cfg.baseline not in names:
        raise ValueError(f"baseline arm {cfg.baseline!r} is not among the arms {names}")
    for arm in cfg.arms:
        for k in cfg.folds:
            for p in arm.synthetic:
                path = resolve_pairs_path(p.replace("{fold}", str(k)))
                if not path.is_file():
                    raise FileNotFoundError(f"arm {arm.name}, fold {k}: {path} not found")


def _record(cfg: ExperimentConfig) -> dict[str, object]:
    return {"arms": [asdict(a) for a in cfg.arms], "baseline": cfg.baseline,
            "folds": cfg.folds, "budget": cfg.budget(), "n_boot": cfg.n_boot}


def _check_record(cfg: ExperimentConfig) -> None:
    """A resumed experiment must keep the budget: otherwise arms would not be comparable."""
    path = Path(cfg.out) / "experiment.json"
    new = _record(cfg)
    if path.exists():
        old = json.loads(path.read_text())
        if old.get("budget") != json.loads(json.dumps(new["budget"])):
            raise ValueError(f"{path} was run with another budget {old.get('budget')}; "
                             "use a new --out")
        arms = {a["name"]: a for a in old.get("arms", [])}
        arms.update({a["name"]: a for a in new["arms"]})  # type: ignore[index, union-attr]
        new["arms"] = list(arms.values())
        new["folds"] = sorted(set(old.get("folds", [])) | set(cfg.folds))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(new, indent=1, default=str) + "\n")


def _train_config(cfg: ExperimentConfig, out: Path, fold: int, task: str,
                  synthetic: tuple[str, ...] = ()):  # type: ignore[no-untyped-def]
    from pipeline.train.loop import TrainConfig

    return TrainConfig(out=out, data_dir=cfg.data_dir, fold=fold, folds_file=cfg.folds_file,
                       task=task, epochs=cfg.epochs, steps_per_epoch=cfg.steps_per_epoch,
                       batch_size=cfg.batch_size, base_filters=cfg.base_filters, depth=cfg.depth,
                       learning_rate=cfg.learning_rate, patience=cfg.patience, seed=cfg.seed,
                       localiser_epochs=cfg.localiser_epochs, workers=cfg.workers,
                       verbose=cfg.verbose, synthetic=list(synthetic),
                       synthetic_fraction=cfg.synthetic_fraction)


def localiser_for_fold(cfg: ExperimentConfig, fold: int) -> Path:
    """The fold's localiser folder: reused from --localiser-from, else trained once here."""
    from pipeline.train.loop import LOCALISER_FILE, train

    if cfg.localiser_from is not None:
        src = Path(cfg.localiser_from) / f"fold{fold}"
        if not (src / LOCALISER_FILE).exists():
            raise FileNotFoundError(f"{src / LOCALISER_FILE} not found (--localiser-from)")
        return src
    dst = Path(cfg.out) / "localiser" / f"fold{fold}"
    if not (dst / LOCALISER_FILE).exists():
        log.info("training the fold %d localiser", fold)
        train(_train_config(cfg, dst, fold, "localiser"))
    return dst


def run_arm_fold(cfg: ExperimentConfig, arm: Arm, fold: int) -> Path:
    """Train (unless done) and evaluate (unless done) one arm on one fold; returns the eval dir."""
    from pipeline.datasets import folds as F
    from pipeline.evaluate.run import evaluate
    from pipeline.train.loop import (
        LOCALISER_FILE,
        SEGMENTER_FILE,
        export_onnx,
        train,
        write_model_json,
    )

    run = Path(cfg.out) / arm.name / f"fold{fold}"
    ev = Path(cfg.out) / arm.name / "eval" / f"fold{fold}"
    if (ev / "metrics.json").exists():
        return ev
    tcfg = _train_config(cfg, run, fold, "segmenter", arm.synthetic)
    if not (run / SEGMENTER_FILE).exists():
        loc = localiser_for_fold(cfg, fold)
        run.mkdir(parents=True, exist_ok=True)
        for name in (LOCALISER_FILE, "localiser.onnx"):
            if (loc / name).exists():
                shutil.copy2(loc / name, run / name)
        log.info("arm %s, fold %d: training the segmenter", arm.name, fold)
        train(tcfg)
    else:
        write_model_json(run, tcfg)
        export_onnx(run)
    ffile = cfg.folds_file or F.DEFAULT_FOLDS_FILE
    _, val = F.split(F.load_folds(ffile), fold)
    evaluate(run, "emidec-png", ev, cfg.data_dir, val, fold=fold, folds_file=ffile,
             progress=cfg.verbose == 1)
    return ev


def run_experiment(cfg: ExperimentConfig) -> dict[str, object]:
    """Every arm on every fold (baseline first), then the comparison report."""
    from pipeline.experiment.report import compare

    check_arms(cfg)
    _check_record(cfg)
    order = sorted(cfg.arms, key=lambda a: a.name != cfg.baseline)
    for k in cfg.folds:
        for arm in order:
            run_arm_fold(cfg, arm, k)
    return compare(Path(cfg.out), [a.name for a in order], cfg.baseline, cfg.folds,
                   n_boot=cfg.n_boot, seed=cfg.seed)
