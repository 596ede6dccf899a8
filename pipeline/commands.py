"""`lgenode pipeline folds | train | evaluate | cv-report | ensemble` (registered on ``pipeline.cli.app``).

Heavy imports (keras, tensorflow, onnxruntime) happen inside the commands.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import typer

DATA_DIR_HELP = "Shared data root or the data-set folder (default: $LGENODE_DATA_DIR or ../shared/data)."
FOLDS_HELP = "Folds JSON (default: pipeline/configs/emidec_folds.json; created from the data if missing)."


def ensemble_cmd(
    run_dir: Path = typer.Argument(..., help="Cross-validation run folder holding fold0..foldK (from `train --fold all`)."),
    out: Path = typer.Option(..., "--out", help="Weights folder to write (e.g. models/weights)."),
    version: str = typer.Option(..., "--version", help="Model version written to model.json (e.g. 0.3.0)."),
    cv_eval: list[Path] = typer.Option([], "--cv-eval", help="CV evaluation folder (`evaluate --fold all --out ...`); repeat it to pool data sets (EMIDEC and MyoPS): the review threshold is chosen on all their cases (Youden on poor vs good, else the lowest 5 % of scores)."),
    threshold: float | None = typer.Option(None, "--quality-threshold", help="Review threshold to ship instead of the CV one (used as given, not shifted)."),
    min_infarct: float | None = typer.Option(None, "--min-infarct-percent", min=0.0, max=100.0, help="Minimum reportable infarct (% of the LV wall; smaller is reported as none) to ship instead of the one chosen on --cv-eval (0: off)."),
    calibrate: bool = typer.Option(True, "--calibrate/--no-calibrate", help="Shift the CV threshold onto the ensemble's score scale, measured on the MyoPS unlabelled/ volumes no member trained on."),
    data_dir: str | None = typer.Option(None, "--data-dir", help=DATA_DIR_HELP),
    name: str = typer.Option("lgenode-lge-att-res-unet-ensemble", "--name"),
) -> None:
    """Assemble the fold models of a cross-validation into one ensemble weights folder."""
    import json

    from pipeline.train.ensemble import assemble

    folds = sorted(p for p in run_dir.glob("fold[0-9]*") if p.is_dir())
    if not folds:
        raise typer.BadParameter(f"no fold folders in {run_dir}", param_hint="RUN_DIR")
    rule, from_cv = "--quality-threshold", False
    if threshold is None and cv_eval:
        threshold, rule = _cv_threshold(cv_eval)
        from_cv = threshold is not None
    min_rule: dict[str, object] = {"rule": "--min-infarct-percent"}
    if min_infarct is None:
        min_infarct, min_rule = _cv_min_infarct(cv_eval) if cv_eval else (0.0, {"rule": "off: no --cv-eval"})
    path = assemble(folds, out, name, version, threshold,
                    {"members_from": str(run_dir),
                     "quality_threshold_from": [str(p) for p in cv_eval] or "--quality-threshold",
                     "quality_threshold_rule": rule, "min_infarct_percent_rule": min_rule},
                    min_infarct_percent=min_infarct)
    if from_cv and calibrate and len(folds) > 1:
        threshold = _shift_threshold(path, threshold, data_dir)  # type: ignore[arg-type]
    typer.echo(f"wrote {path} ({len(folds)} members, quality threshold {threshold}, {rule}; "
               f"minimum reportable infarct {min_infarct:g} % of the LV wall)")
    after = min_rule.get("after")
    if isinstance(after, dict) and after.get("without_infarct"):
        before = min_rule["before"]
        typer.echo(f"  on the CV cases: hearts without infarct reported as none "
                   f"{before['correctly_none']} -> {after['correctly_none']} of {after['without_infarct']}; "
                   f"infarcts missed {before['missed']} -> {after['missed']} of {after['with_infarct']}")


def _shift_threshold(weights: Path, cv_threshold: float, data_dir: str | None) -> float:
    """Move the CV (one member per case) threshold onto the ensemble's score scale and record
    how in model.json; without unseen volumes, keep it and say so."""
    import json

    from pipeline.train.calibrate import ensemble_shift, unlabelled_volumes

    doc_path = weights / "model.json"
    doc = json.loads(doc_path.read_text())
    volumes = unlabelled_volumes(data_dir)
    if not volumes:
        typer.echo("warning: no MyoPS unlabelled/ volumes: the CV threshold is shipped unshifted; "
                   "the ensemble's scores run lower than one member's, so it will flag more", err=True)
        doc["training"]["quality_threshold_shift"] = None
    else:
        shift = ensemble_shift(weights, volumes)
        doc["training"]["quality_threshold_cv"] = cv_threshold
        doc["training"]["quality_threshold_shift"] = shift.to_dict()
        doc["quality_threshold"] = round(cv_threshold + shift.median, 4)
        typer.echo(f"quality threshold {cv_threshold:.4f} (CV, one member) {shift.median:+.4f} "
                   f"(ensemble vs members, median of {shift.n_volumes} unseen volumes)")
    doc_path.write_text(json.dumps(doc, indent=1) + "\n")
    return float(doc["quality_threshold"])


def _cv_docs(folders: list[Path]) -> list[dict[str, object]]:
    """The metrics.json of each CV evaluation folder (a clear error naming the one missing)."""
    import json

    docs = []
    for f in folders:
        path = f / "metrics.json"
        if not path.exists():
            raise typer.BadParameter(f"{path} not found (run `lgenode pipeline evaluate --fold all "
                                     f"--out {f}` first)", param_hint="--cv-eval")
        docs.append(json.loads(path.read_text()))
    return docs


def _cv_records(folders: list[Path]) -> list[dict[str, object]]:
    return [c for d in _cv_docs(folders) for c in d.get("cases", [])]  # type: ignore[attr-defined]


def _cv_min_infarct(folders: list[Path]) -> tuple[float, dict[str, object]]:
    """The minimum reportable infarct chosen on the pooled CV records (``pipeline.evaluate.min_infarct``)."""
    from pipeline.evaluate import min_infarct

    return min_infarct.choose(_cv_records(folders))


def _cv_threshold(folders: list[Path]) -> tuple[float | None, str]:
    """The review threshold chosen on the pooled per-case records of CV evaluations; a folder
    without records (older metrics.json) contributes its own best_threshold when it is alone."""
    from pipeline.evaluate import quality

    docs = _cv_docs(folders)
    records = [c for d in docs for c in d.get("cases", [])]  # type: ignore[attr-defined]
    if not records and len(docs) == 1:
        q = docs[0]["summary"].get("quality_flag") or {}
        return q.get("best_threshold"), str(q.get("best_threshold_rule") or "youden")
    threshold, rule = quality.choose_rule(records)
    return threshold, f"{rule} on {len(records)} CV cases" if rule else "no quality scores"


def quantize_cmd(
    weights: Path = typer.Argument(..., help="Weights folder (model.json + ONNX networks; an ensemble's members too)."),
    data_dir: str | None = typer.Option(None, "--data-dir", help=DATA_DIR_HELP),
    folds: Path | None = typer.Option(None, "--folds", help=FOLDS_HELP + " Each fold member is calibrated without its validation cases."),
    cases: int = typer.Option(24, "--cases", min=1, help="Calibration cases per data set (EMIDEC, MyoPS), spread over the list."),
) -> None:
    """Write int8 copies (*.int8.onnx) of a weights folder's networks, served with runtime onnx-int8."""
    import json

    from pipeline.evaluate.cases import iter_cases, list_case_ids
    from pipeline.train.quantize import quantize_weights

    if not (weights / "model.json").exists():
        raise typer.BadParameter(f"{weights}: no model.json", param_hint="WEIGHTS")
    ffile = folds or Path("pipeline/configs/emidec_folds.json")
    folds_doc = json.loads(ffile.read_text()) if ffile.exists() else None
    picked: list[tuple[str, object]] = []
    for fmt in ("emidec-png", "myops-nifti"):
        try:
            ids = list_case_ids(fmt, data_dir)
        except FileNotFoundError as exc:
            typer.echo(f"{fmt}: not found ({exc}); calibrating without it", err=True)
            continue
        step = max(1, len(ids) // cases)
        ids = ids[::step][:cases]
        picked += [(c.case_id, c.volume) for c in iter_cases(fmt, data_dir, ids)]
    if not picked:
        raise typer.BadParameter("no calibration cases found", param_hint="--data-dir")
    facts = quantize_weights(weights, picked, folds_doc)
    for name, m in facts["members"].items():  # type: ignore[union-attr]
        typer.echo(f"{name}: {m['calibration_slices']} slices from {m['calibration_cases']} cases; int8 keeps "
                   f"{100 * m['segmenter_label_agreement']:.2f} % of the segmenter's labels"
                   + (f", {100 * m['localiser_mask_agreement']:.2f} % of the localiser's LV mask"
                      if "localiser_mask_agreement" in m else ""))
    typer.echo(f"wrote int8 networks and model.json:int8 in {weights}; serve with runtime onnx-int8, "
               f"check with `lgenode pipeline evaluate --runtime onnx-int8`")


def _logging(verbose: bool) -> None:
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")


def _tf_defaults() -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if _has_1x1_stride2_conv():
        # TF 2.21 CPU + oneDNN crashes (SIGSEGV) in the backward pass of a 1x1 stride-2 Conv2D
        # (attention-gate theta). Disabling oneDNN avoids the crash but halves CPU speed, so it
        # is done only while the networks contain such a layer; an explicit setting wins.
        os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")


def _has_1x1_stride2_conv() -> bool:
    """Whether models/networks.py builds a Conv2D with kernel 1 and stride 2 (read as text:
    must run before TensorFlow is imported)."""
    import importlib.util
    import re

    spec = importlib.util.find_spec("models.networks")
    if spec is None or not spec.origin:
        return False
    text = Path(spec.origin).read_text()
    return re.search(r"Conv2D\([^()]*?,\s*(1|\(1,\s*1\))\s*,\s*strides\s*=\s*(2|\(2,\s*2\))", text) is not None


def _parse_folds(spec: str, n_folds: int) -> list[int] | None:
    """'3' -> [3]; 'all' -> [0..n-1]; '0,2' -> [0, 2]; 'full' -> None (all cases, no validation)."""
    s = spec.strip().lower()
    if s == "full":
        return None
    if s == "all":
        return list(range(n_folds))
    try:
        ks = [int(x) for x in s.split(",")]
    except ValueError as exc:
        raise typer.BadParameter("use a fold number, a comma list, 'all' or 'full'") from exc
    bad = [k for k in ks if not 0 <= k < n_folds]
    if bad:
        raise typer.BadParameter(f"folds {bad} not in 0..{n_folds - 1}")
    return ks


def folds_cmd(
    data_dir: str | None = typer.Option(None, "--data-dir", help=DATA_DIR_HELP),
    out: Path | None = typer.Option(None, "--out", help=FOLDS_HELP),
    n_folds: int = typer.Option(5, "--n-folds", min=2, help="Number of folds."),
    seed: int = typer.Option(0, "--seed", help="Shuffling seed (the result depends only on it and the case list)."),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing folds file."),
    myops: bool = typer.Option(True, "--myops/--no-myops", help="Also deal the labelled MyoPS volumes over the folds (ranked by scar share), when the data are present."),
) -> None:
    """Make the cross-validation folds (EMIDEC grouped by patient and stratified; the MyoPS
    volumes dealt over the same folds) and write them as JSON."""
    from pipeline.datasets import folds as F
    from pipeline.datasets.paths import myops_dir

    path = out or F.DEFAULT_FOLDS_FILE
    if path.exists() and not force:
        doc = F.load_folds(path)
        typer.echo(f"{path} exists (use --force to rewrite); its folds:")
    else:
        doc = F.make_folds(F.emidec_case_infos(data_dir), n_folds=n_folds, seed=seed)
        if myops and myops_dir(data_dir).is_dir():
            F.assign_myops(doc, F.myops_scar_shares(data_dir), seed=seed)
        F.save_folds(doc, path)
        typer.echo(f"wrote {path}")
    strata = doc["strata"]
    for f in doc["folds"]:
        counts = {s: sum(1 for c in f["val"] if strata.get(c) == s) for s in F.STRATA}
        typer.echo(f"fold {f['fold']}: {len(f['val'])} cases, {f['n_slices']} slices, {counts}"
                   + (f", MyoPS {', '.join(f['val_myops'])}" if f.get("val_myops") else ""))


def train_cmd(
    out: Path = typer.Option(..., "--out", help="Run folder (with --fold all: one subfolder fold{k} per fold)."),
    data_dir: str | None = typer.Option(None, "--data-dir", help=DATA_DIR_HELP),
    fmt: str = typer.Option("emidec-png", "--format", help="Training data format (only emidec-png)."),
    fold: str = typer.Option("0", "--fold", help="Fold K, a comma list, 'all' (5-fold CV) or 'full' (every case, no validation)."),
    folds_file: Path | None = typer.Option(None, "--folds", help=FOLDS_HELP),
    task: str = typer.Option("both", "--task", help="both (localiser then segmenter), segmenter, or localiser."),
    epochs: int = typer.Option(200, "--epochs", min=1, help="Maximum segmenter epochs (early stopping on validation Dice)."),
    steps_per_epoch: int = typer.Option(100, "--steps-per-epoch", min=1, help="Augmented batches per epoch."),
    batch_size: int = typer.Option(16, "--batch-size", min=1),
    base_filters: int = typer.Option(16, "--base-filters", min=2, help="Segmenter filters at full resolution (doubling per level)."),
    depth: int = typer.Option(4, "--depth", min=1, max=5, help="Segmenter poolings."),
    dropout: float = typer.Option(0.1, "--dropout"),
    learning_rate: float = typer.Option(1e-3, "--learning-rate"),
    patience: int = typer.Option(40, "--patience", min=1, help="Early-stopping patience (epochs); LR halves after patience/3."),
    localiser_epochs: int | None = typer.Option(None, "--localiser-epochs", help="Localiser epochs (default: min(epochs, 60))."),
    class_weights: str = typer.Option("auto", "--class-weights", help="'auto' (inverse sqrt frequency), 'none', or 5 comma-separated weights."),
    dice_weight: float = typer.Option(1.0, "--dice-weight", help="Weight of the soft Dice term."),
    seed: int = typer.Option(0, "--seed", help="Seed for weights, sampling and augmentation."),
    limit_cases: int | None = typer.Option(None, "--limit-cases", help="Use only N training cases (and N/2 validation cases): smoke tests."),
    export: bool = typer.Option(True, "--export-onnx/--no-export-onnx", help="Export the trained networks to ONNX (serving runtime)."),
    workers: int = typer.Option(1, "--workers", min=1, help="Threads preparing batches."),
    synthetic: list[str] = typer.Option([], "--synthetic", help="Synthetic pairs.npz (or its folder) mixed into segmenter batches; repeat for several. '{fold}' in the path is replaced by the fold number."),
    synthetic_fraction: float = typer.Option(0.25, "--synthetic-fraction", min=0.0, max=0.95, help="Share of each segmenter batch drawn from --synthetic (same steps and batch size as without)."),
    myops: bool = typer.Option(True, "--myops/--no-myops", help="Also train (and validate) on the folds' MyoPS LGE volumes (real scanner geometry and intensities; scar supervises 'infarct or MVO')."),
    myops_share: float = typer.Option(0.3, "--myops-share", min=0.0, max=1.0, help="Share of case draws per batch taken from MyoPS cases."),
    localiser_cine: bool = typer.Option(True, "--localiser-cine/--no-localiser-cine", help="Also train the localiser on the MyoPS bSSFP (C0) images, which share the LGE labels."),
    lr_schedule: str = typer.Option("poly", "--lr-schedule", help="poly (nnU-Net: lr0*(1-e/E)^0.9, fixed epochs, best checkpoint kept) or plateau (halve on plateau, early stopping)."),
    resume: bool = typer.Option(False, "--resume", help="Continue an interrupted run from its last checkpoints (weights, optimizer, epoch, history); finished stages are kept."),
    quiet: bool = typer.Option(False, "--quiet", help="One line per epoch instead of a progress bar."),
) -> None:
    """Train the LV localiser and the attention residual U-Net on EMIDEC (one fold, all folds, or all cases).

    Writes segmenter.keras, localiser.keras (+ .onnx), model.json, history.json, curves.png,
    train_config.json and checkpoints/ into the run folder, which `evaluate --weights` and
    `lgenode segment` use as is. Runs under TensorFlow (CPU) or JAX (KERAS_BACKEND=jax).
    """
    _tf_defaults()
    _logging(not quiet)
    if fmt != "emidec-png":
        raise typer.BadParameter("training supports --format emidec-png only", param_hint="--format")
    from pipeline.datasets import folds as F
    from pipeline.train.loop import TASKS, TrainConfig, train, train_folds

    if task not in TASKS:
        raise typer.BadParameter(f"choose one of {TASKS}", param_hint="--task")
    n_folds = 5
    if fold.strip().lower() not in ("full",):
        n_folds = int(F.load_or_create(folds_file, data_dir)["n_folds"])
    ks = _parse_folds(fold, n_folds)
    cfg = TrainConfig(out=out, data_dir=data_dir, fold=None, folds_file=folds_file, task=task,
                      epochs=epochs, steps_per_epoch=steps_per_epoch, batch_size=batch_size,
                      base_filters=base_filters, depth=depth, dropout=dropout,
                      learning_rate=learning_rate, patience=patience,
                      localiser_epochs=localiser_epochs, class_weights=class_weights,
                      dice_weight=dice_weight, seed=seed, limit_cases=limit_cases,
                      export_onnx=export, workers=workers, verbose=2 if quiet else 1,
                      synthetic=list(synthetic), synthetic_fraction=synthetic_fraction,
                      myops=myops, myops_share=myops_share, localiser_cine=localiser_cine,
                      lr_schedule=lr_schedule, resume=resume)
    if lr_schedule not in ("poly", "plateau"):
        raise typer.BadParameter("poly or plateau", param_hint="--lr-schedule")
    if ks is None:
        runs = [train(cfg)]
    elif len(ks) == 1 and fold.strip().lower() != "all":
        cfg.fold = ks[0]
        runs = [train(cfg)]
    else:
        runs = train_folds(cfg, ks)
    for r in runs:
        typer.echo(f"trained: {r}")


def evaluate_cmd(
    weights: Path = typer.Option(..., "--weights", help="Weights folder (model.json + segmenter/localiser .keras or .onnx); with --fold all, the run folder holding fold0..fold4."),
    out: Path = typer.Option(..., "--out", help="Output folder: metrics.json, metrics.md, per_case.csv, worst/*.png."),
    data_dir: str | None = typer.Option(None, "--data-dir", help=DATA_DIR_HELP),
    fmt: str = typer.Option("emidec-png", "--format", help="emidec-png or myops-nifti."),
    folds_file: Path | None = typer.Option(None, "--folds", help="Folds JSON: with --fold, evaluate only that fold's validation cases."),
    fold: str | None = typer.Option(None, "--fold", help="Fold K (its validation cases) or 'all' (each fold with WEIGHTS/fold{k}, pooled)."),
    cases: str | None = typer.Option(None, "--cases", help="Comma-separated case ids (default: every case)."),
    limit_cases: int | None = typer.Option(None, "--limit-cases", help="Only the first N cases (smoke tests)."),
    runtime: str = typer.Option("auto", "--runtime", help="auto (ONNX if exported, else Keras), onnx, onnx-int8 (quantised, see `quantize`) or keras."),
    postprocess: bool = typer.Option(True, "--postprocess/--no-postprocess", help="Anatomical post-processing (on in the node)."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bar."),
) -> None:
    """Score a trained model on a labelled data set through the node's inference entry point.

    Reports clinical agreement of infarct % and MVO % of the LV myocardium (Lin's CCC, Pearson r,
    bias, 95 % limits; agreement.png), (a) per-class Dice pooled over all slices and their mean,
    (b) EMIDEC per-case Dice for myocardium, infarct and no-reflow, (c) myocardium HD95,
    (d) per-case volume agreement, (e) LV localisation, and overlays of the five worst cases.
    """
    _logging(False)
    from pipeline.evaluate.cases import FORMATS, list_case_ids
    from pipeline.evaluate.run import evaluate, evaluate_cv

    if fmt not in FORMATS:
        raise typer.BadParameter(f"choose one of {FORMATS}", param_hint="--format")
    if runtime not in ("auto", "onnx", "onnx-int8", "keras"):
        raise typer.BadParameter("auto, onnx, onnx-int8 or keras", param_hint="--runtime")
    fold_k: int | None = None
    ids: list[str] | None = None
    if fold is not None:
        from pipeline.datasets import folds as F

        ffile = folds_file or F.DEFAULT_FOLDS_FILE
        doc = F.load_folds(ffile)
        ks = _parse_folds(fold, int(doc["n_folds"]))
        if ks is None:
            raise typer.BadParameter("'full' has no validation cases", param_hint="--fold")
        if fold.strip().lower() == "all" or len(ks) > 1:
            summary = evaluate_cv(weights, fmt, out, ffile, data_dir, runtime, postprocess, ks,
                                  progress=not quiet)
            _echo_summary(summary, out)
            return
        fold_k, folds_file = ks[0], ffile
        ids = F.validation_ids(doc, fold_k, fmt)
        if not ids:
            raise typer.BadParameter(f"fold {fold_k} has no {fmt} validation cases in {ffile}", param_hint="--fold")
        if not (weights / "model.json").exists() and (weights / f"fold{fold_k}").is_dir():
            weights = weights / f"fold{fold_k}"  # the run folder of `train --fold all`
    if cases:
        wanted = [c.strip() for c in cases.split(",") if c.strip()]
        ids = [c for c in (ids if ids is not None else wanted) if c in wanted]
    if limit_cases:
        ids = (ids if ids is not None else list_case_ids(fmt, data_dir))[:limit_cases]
    summary = evaluate(weights, fmt, out, data_dir, ids, runtime, postprocess, fold_k,
                       folds_file, progress=not quiet)
    _echo_summary(summary, out)


def _echo_summary(summary: dict[str, object], out: Path) -> None:
    pc = summary["pooled_class_dice"]
    mean = summary["pooled_class_dice_mean"]

    def f(v: object) -> str:
        return "n/a" if v is None or v != v else f"{float(v):.4f}"  # type: ignore[arg-type]

    typer.echo(f"{summary['n_cases']} cases: pooled Dice "
               + ", ".join(f"{k} {f(v)}" for k, v in pc.items()) + f"; mean {f(mean)}")
    inf = (summary.get("clinical_agreement") or {}).get("infarct_percent") or {}  # type: ignore
    if inf.get("n"):
        typer.echo(f"infarct % of LV myocardium: CCC {f(inf.get('ccc'))}, bias {f(inf.get('bias'))}"
                   f" ± {f(inf.get('sd'))} points (n {inf['n']})")
    typer.echo(f"report: {out / 'metrics.md'}")


def cv_report_cmd(
    evaluations: list[Path] = typer.Argument(..., help="Evaluation folders (each with metrics.json), one per fold."),
    out: Path = typer.Option(..., "--out", help="Output folder for the pooled report."),
) -> None:
    """Pool per-fold evaluations into one cross-validation report (pooled Dice, per-case, per-fold table)."""
    from pipeline.evaluate.run import cv_report

    summary = cv_report(list(evaluations), out)
    _echo_summary(summary, out)


def regression_spec_cmd(
    weights: Path = typer.Argument(..., help="Weights folder whose model.json gets the `regression` block."),
    fold: int = typer.Option(0, "--fold", help="Check on this fold's validation cases (EMIDEC and MyoPS) of --folds."),
    folds: Path | None = typer.Option(None, "--folds", help=FOLDS_HELP),
    data_dir: str | None = typer.Option(None, "--data-dir", help=DATA_DIR_HELP),
    dice_margin: float = typer.Option(0.03, "--dice-margin", min=0, help="Floor = measured Dice minus this."),
    ccc_margin: float = typer.Option(0.05, "--ccc-margin", min=0, help="Floor = measured infarct % CCC minus this."),
) -> None:
    """Measure the weights on a fold's cases (every runtime they ship) and write the CI regression floors into model.json."""
    import json
    import tempfile

    from pipeline.datasets import folds as F
    from pipeline.evaluate.regression import spec_from
    from pipeline.evaluate.run import evaluate

    doc_path = weights / "model.json"
    if not doc_path.exists():
        raise typer.BadParameter(f"{doc_path} not found", param_hint="WEIGHTS")
    info = json.loads(doc_path.read_text())
    runtimes = ["onnx"] + (["onnx-int8"] if info.get("int8") else [])
    folds_doc = F.load_folds(folds or F.DEFAULT_FOLDS_FILE)
    cases = {fmt: F.validation_ids(folds_doc, fold, fmt) for fmt in ("emidec-png", "myops-nifti")}
    measured: dict[str, dict[str, dict[str, object]]] = {}
    with tempfile.TemporaryDirectory(prefix="regression-spec-") as tmp:
        for fmt, ids in cases.items():
            for rt in runtimes:
                typer.echo(f"{fmt}, {rt}: {len(ids)} cases", err=True)
                measured.setdefault(fmt, {})[rt] = evaluate(weights, fmt, Path(tmp) / f"{fmt}-{rt}", data_dir=data_dir,
                                                            case_ids=ids, runtime=rt, progress=False)
    spec = spec_from(measured, cases, dice_margin, ccc_margin)
    info["regression"] = spec
    doc_path.write_text(json.dumps(info, indent=1) + "\n")
    typer.echo(f"wrote the regression block of {doc_path}: {spec['note']}")


def register(app: typer.Typer) -> None:
    app.command("folds")(folds_cmd)
    app.command("train")(train_cmd)
    app.command("evaluate")(evaluate_cmd)
    app.command("cv-report")(cv_report_cmd)
    app.command("ensemble")(ensemble_cmd)
    app.command("quantize")(quantize_cmd)
    app.command("regression-spec")(regression_spec_cmd)
