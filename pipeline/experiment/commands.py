"""`lgenode pipeline experiment | experiment-report` (registered on ``pipeline.cli.app``)."""

from __future__ import annotations

from pathlib import Path

import typer

ARM_HELP = ("An arm: 'real' (no synthetic data) or NAME=PAIRS[+PAIRS...] where PAIRS is a pairs.npz "
            "(or its folder); '{fold}' in a path is replaced by the fold number, so each fold can "
            "use synthetic data made without its validation cases. Repeat for each arm.")


def experiment_cmd(
    out: Path = typer.Option(..., "--out", help="Experiment folder (re-running resumes; the budget must not change)."),
    arm: list[str] = typer.Option(..., "--arm", help=ARM_HELP),
    fold: str = typer.Option("0", "--fold", help="Fold K, a comma list or 'all'."),
    baseline: str = typer.Option("real", "--baseline", help="The arm the others are compared with."),
    data_dir: str | None = typer.Option(None, "--data-dir", help="Shared data root (default: $LGENODE_DATA_DIR or ../shared/data)."),
    folds_file: Path | None = typer.Option(None, "--folds", help="Folds JSON (default: pipeline/configs/emidec_folds.json)."),
    epochs: int = typer.Option(12, "--epochs", min=1, help="Segmenter epochs, every arm."),
    steps_per_epoch: int = typer.Option(50, "--steps-per-epoch", min=1, help="Batches per epoch, every arm."),
    batch_size: int = typer.Option(16, "--batch-size", min=2),
    base_filters: int = typer.Option(16, "--base-filters", min=2),
    depth: int = typer.Option(4, "--depth", min=1, max=5),
    learning_rate: float = typer.Option(1e-3, "--learning-rate"),
    patience: int = typer.Option(40, "--patience", min=1),
    seed: int = typer.Option(0, "--seed", help="Same seed for every arm: identical real batches and initial weights."),
    synthetic_fraction: float = typer.Option(0.25, "--synthetic-fraction", min=0.0, max=0.95,
                                             help="Share of each batch drawn from the arm's synthetic set."),
    localiser_epochs: int = typer.Option(40, "--localiser-epochs", min=1, help="Epochs of the per-fold localiser (trained once, shared by the arms; 40 x the steps per epoch: 4 left it at validation Dice 0.18)."),
    localiser_from: Path | None = typer.Option(None, "--localiser-from", help="Reuse RUN/fold{k}/localiser.keras (e.g. a CV run) instead of training one."),
    n_boot: int = typer.Option(2000, "--n-boot", min=100, help="Bootstrap resamples."),
    quiet: bool = typer.Option(False, "--quiet", help="One line per epoch instead of progress bars."),
) -> None:
    """Train the same segmenter with and without synthetic data on the same folds, and compare.

    Writes OUT/results.md (pooled per-class Dice per arm, difference to the baseline with a 95 %
    paired bootstrap interval over cases), results.json and deltas.png.
    """
    from pipeline.commands import _logging, _parse_folds, _tf_defaults

    _tf_defaults()
    _logging(not quiet)
    from pipeline.datasets import folds as F
    from pipeline.experiment.run import Arm, ExperimentConfig, run_experiment

    try:
        arms = [Arm.parse(a) for a in arm]
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--arm") from exc
    n_folds = int(F.load_or_create(folds_file, data_dir)["n_folds"])
    ks = _parse_folds(fold, n_folds)
    if ks is None:
        raise typer.BadParameter("the experiment needs validation folds, not 'full'", param_hint="--fold")
    cfg = ExperimentConfig(out=out, arms=arms, folds=ks, baseline=baseline, data_dir=data_dir,
                           folds_file=folds_file, epochs=epochs, steps_per_epoch=steps_per_epoch,
                           batch_size=batch_size, base_filters=base_filters, depth=depth,
                           learning_rate=learning_rate, patience=patience, seed=seed,
                           synthetic_fraction=synthetic_fraction, localiser_epochs=localiser_epochs,
                           localiser_from=localiser_from, n_boot=n_boot,
                           verbose=2 if quiet else 1)
    try:
        doc = run_experiment(cfg)
    except (ValueError, FileNotFoundError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    _echo(doc, out)


def report_cmd(
    out: Path = typer.Option(..., "--out", help="Experiment folder written by `experiment`."),
    n_boot: int = typer.Option(2000, "--n-boot", min=100, help="Bootstrap resamples."),
    seed: int = typer.Option(0, "--seed", help="Bootstrap seed."),
) -> None:
    """Recompute the comparison (table, intervals, plot) from the evaluations already in OUT."""
    import json

    from pipeline.experiment.report import compare

    path = out / "experiment.json"
    if not path.exists():
        typer.echo(f"error: {path} not found (run `lgenode pipeline experiment` first)", err=True)
        raise typer.Exit(2)
    rec = json.loads(path.read_text())
    names = [a["name"] for a in rec["arms"]]
    names = sorted(names, key=lambda a: a != rec["baseline"])
    try:
        doc = compare(out, names, rec["baseline"], rec["folds"], n_boot=n_boot, seed=seed)
    except (ValueError, FileNotFoundError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    _echo(doc, out)


def _echo(doc: dict[str, object], out: Path) -> None:
    for a, e in doc["arms"].items():  # type: ignore[union-attr]
        m = e["pooled_dice_mean"]
        pd = e["pooled_dice"]
        typer.echo(f"{a}: mean {m if m is None else round(m, 4)}; infarct {pd['infarct']}, "
                   f"no-reflow {pd['no_reflow']}")
    typer.echo(f"report: {out / 'results.md'}")


def register(app: typer.Typer) -> None:
    app.command("experiment")(experiment_cmd)
    app.command("experiment-report")(report_cmd)
