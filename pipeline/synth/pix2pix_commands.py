"""`lgenode pipeline pix2pix-train | pix2pix-generate` (``register(app)`` adds them).

Heavy imports (keras, tensorflow) happen inside the commands so that ``lgenode --help`` stays fast.
"""

from __future__ import annotations

import logging
from pathlib import Path

import typer

DATA_DIR_HELP = "Shared data root or the emidec folder (default: $LGENODE_DATA_DIR or ../shared/data)."


def pix2pix_train_cmd(
    out: Path = typer.Option(..., "--out", help="Generator folder (generator.keras, gan.json, history.json, "
                                                "curves.png, samples.png, MODEL_CARD.md, checkpoints/)."),
    data_dir: str | None = typer.Option(None, "--data-dir", help=DATA_DIR_HELP),
    exclude_fold: int | None = typer.Option(
        None, "--exclude-fold", min=0,
        help="Leave fold K's validation cases out of training (they become the held-out samples and "
             "val_l1), so the generator can feed fold K's segmenter training without leaking."),
    folds: Path | None = typer.Option(None, "--folds", help="Folds JSON (default: pipeline/configs/emidec_folds.json)."),
    epochs: int = typer.Option(30, "--epochs", min=1, help="Total epochs (a resumed run continues up to this)."),
    steps_per_epoch: int = typer.Option(100, "--steps-per-epoch", min=1, help="Update steps per epoch."),
    batch_size: int = typer.Option(8, "--batch-size", min=1, help="Slices per step."),
    base_filters: int = typer.Option(32, "--base-filters", min=1, help="Generator filters at the first level."),
    depth: int = typer.Option(5, "--depth", min=1, max=7, help="Generator levels (128 / 2**depth at the bottleneck)."),
    disc_filters: int = typer.Option(32, "--disc-filters", min=1, help="Discriminator filters at the first layer."),
    norm: str = typer.Option("batch", "--norm", help="batch or instance normalisation in both nets."),
    l1_lambda: float = typer.Option(100.0, "--l1-lambda", help="Weight of the class-weighted L1 term."),
    class_weights: str = typer.Option("1,7,11,26,90", "--class-weights",
                                      help="L1 weights of background, cavity, myocardium, infarct, no-reflow."),
    augment: str = typer.Option("dihedral", "--augment",
                                help="dihedral (flips + 90-degree rotations of mask and image) or none "
                                     "(keeps EMIDEC's fixed orientation)."),
    learning_rate: float = typer.Option(2e-4, "--learning-rate", help="Adam learning rate (both nets)."),
    seed: int = typer.Option(0, "--seed", help="Seed for weights, batches and dropout."),
    limit_cases: int | None = typer.Option(None, "--limit-cases", min=1, help="Use only N training cases (smoke tests)."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --out after its last checkpointed epoch."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bars."),
) -> None:
    """Train pix2pix (label mask -> LGE image, 128x128 ROI) on the development EMIDEC slices."""
    from pipeline.commands import _tf_defaults

    _tf_defaults()
    from pipeline.synth import pix2pix as P

    try:
        weights = tuple(float(v) for v in class_weights.split(","))
    except ValueError as exc:
        raise typer.BadParameter("--class-weights: five comma-separated numbers") from exc
    if len(weights) != P.N_CLASSES:
        raise typer.BadParameter("--class-weights: five comma-separated numbers")
    if augment not in P.AUGMENTS:
        raise typer.BadParameter(f"--augment must be one of {', '.join(P.AUGMENTS)}")
    if norm not in ("batch", "instance"):
        raise typer.BadParameter("--norm must be batch or instance")
    cfg = P.Pix2PixConfig(out=out, data_dir=data_dir, exclude_fold=exclude_fold, folds_file=folds,
                          epochs=epochs, steps_per_epoch=steps_per_epoch, batch_size=batch_size,
                          base_filters=base_filters, depth=depth, disc_filters=disc_filters, norm=norm,
                          l1_lambda=l1_lambda, class_weights=weights, augment=augment,
                          learning_rate=learning_rate, seed=seed, limit_cases=limit_cases)
    logging.basicConfig(level=logging.WARNING if quiet else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        path = P.train(cfg, resume=resume, progress=not quiet)
    except (FileExistsError, FileNotFoundError, ValueError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    typer.echo(f"pix2pix generator in {path}")


def pix2pix_generate_cmd(
    generator: Path = typer.Option(..., "--generator", help="Folder written by pix2pix-train."),
    masks: Path = typer.Option(..., "--masks", help="masks.npz from `simulate`, or any pairs.npz (its masks), or their folder."),
    out: Path = typer.Option(..., "--out", help="Output folder: pairs.npz (images, masks), pairs.json, preview.png."),
    seed: int = typer.Option(0, "--seed", help="Seed of the inference dropout (same seed, same images)."),
    batch_size: int = typer.Option(16, "--batch-size", min=1, help="Masks per forward pass."),
    dropout: bool | None = typer.Option(
        None, "--dropout/--no-dropout",
        help="Keep the generator's dropout on at inference (pix2pix's noise; default: as in gan.json, on)."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bar."),
) -> None:
    """Synthesise LGE images for label masks with a trained pix2pix generator (writes pairs.npz)."""
    from pipeline.commands import _tf_defaults

    _tf_defaults()
    from pipeline.synth import pix2pix as P

    try:
        path = P.generate_pairs(generator, masks, out, seed=seed, batch_size=batch_size, dropout=dropout,
                                progress=not quiet)
    except (FileNotFoundError, ValueError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    typer.echo(f"wrote {path}")


def register(app: typer.Typer) -> None:
    app.command("pix2pix-train")(pix2pix_train_cmd)
    app.command("pix2pix-generate")(pix2pix_generate_cmd)
