"""`lgenode pipeline evaluate-synthesis` (register with ``register(app)`` on ``pipeline.cli.app``)."""

from __future__ import annotations

from pathlib import Path

import typer


def evaluate_synthesis_cmd(
    out: Path = typer.Option(..., "--out", help="Output folder: synthesis.json, synthesis.md, grid.png."),
    synthetic: list[str] | None = typer.Option(
        None, "--synthetic",
        help="NAME=pairs.npz (or its folder; images + masks, normalised like segmenter input). Repeatable."),
    paired: list[str] | None = typer.Option(
        None, "--paired",
        help="NAME=file.npz holding images (synthetic), real (the real image of the same slice) and masks: "
             "adds PSNR/SSIM. Repeatable."),
    pix2pix: Path | None = typer.Option(
        None, "--pix2pix", help="Trained pix2pix folder: generate from the reference masks (paired row)."),
    weights: Path | None = typer.Option(
        None, "--weights",
        help="Weights folder of the segmenter that scores the sets (FCN-score; segmenter.keras [+ .onnx]); "
             "default models/weights or $LGENODE_WEIGHTS_DIR. The shipped segmenter was trained with pix2pix "
             "slices too (MODEL_CARD.md): for an FCN-score free of synthetic data, pass one trained on real "
             "slices only (e.g. the `real` arm of `lgenode pipeline experiment`)."),
    data_dir: str | None = typer.Option(
        None, "--data-dir", help="Shared data root or the emidec folder (default: $LGENODE_DATA_DIR or ../shared/data)."),
    real_fold: int | None = typer.Option(
        None, "--real-fold", min=0, help="Reference = this fold's validation cases (default 0)."),
    real_cases: str | None = typer.Option(
        None, "--real-cases", help="Reference = these EMIDEC cases (comma list; instead of --real-fold)."),
    folds: Path | None = typer.Option(None, "--folds", help="Folds JSON (default: pipeline/configs/emidec_folds.json)."),
    max_images: int | None = typer.Option(
        None, "--max-images", min=4, help="At most this many images per set, reference included (random, seeded)."),
    seed: int = typer.Option(0, "--seed", help="Seed for subsets, halves, KID subsets and physics renders."),
    runtime: str = typer.Option("auto", "--runtime", help="FCN-score segmenter runtime: auto (ONNX if present) | onnx | keras."),
    physics: bool = typer.Option(True, "--physics/--no-physics",
                                 help="Add the physics renderer on the reference masks (paired row)."),
    kid_subsets: int = typer.Option(100, "--kid-subsets", min=1, help="Number of KID subsets."),
    kid_subset_size: int = typer.Option(
        1000, "--kid-subset-size", min=2, help="KID subset size (capped at half the smaller set)."),
    feature_layer: str = typer.Option("bottleneck_out", "--feature-layer",
                                      help="Segmenter layer whose output is pooled into features."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bars."),
) -> None:
    """KID, Fréchet distance (segmenter-bottleneck features), FCN-score and PSNR/SSIM of synthetic LGE sets."""
    from pipeline.commands import _tf_defaults

    _tf_defaults()
    from models.segment import weights_dir_default
    from pipeline.synth import evaluate_synthesis as ES

    if real_fold is not None and real_cases:
        raise typer.BadParameter("give --real-fold or --real-cases, not both")
    if runtime not in ("auto", "onnx", "keras"):
        raise typer.BadParameter("--runtime must be auto, onnx or keras")
    try:
        sets = [ES.load_image_set(*ES.parse_named(s)) for s in synthetic or []]
        sets += [ES.load_image_set(*ES.parse_named(s), paired=True) for s in paired or []]
    except (FileNotFoundError, ValueError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    names = [s.name for s in sets]
    if len(set(names)) != len(names):
        raise typer.BadParameter(f"set names must be unique: {names}")
    if pix2pix is not None and not (pix2pix / "generator.keras").exists():
        typer.echo(f"error: no generator.keras in {pix2pix} (--pix2pix)", err=True)
        raise typer.Exit(2)
    w = weights or weights_dir_default()
    if not (w / "segmenter.keras").exists() and not (w / "model.json").exists():
        typer.echo(f"error: no segmenter.keras in {w} (--weights)", err=True)
        raise typer.Exit(2)
    cases = [c.strip() for c in real_cases.split(",") if c.strip()] if real_cases else None
    try:
        ids, desc = ES.reference_cases(real_fold, cases, folds)
        ref = ES.load_real_reference(ids, data_dir, desc, progress=not quiet)
    except (FileNotFoundError, KeyError, ValueError) as exc:
        typer.echo(f"error: {exc} (set --data-dir or LGENODE_DATA_DIR)", err=True)
        raise typer.Exit(2) from exc
    result = ES.run(out, reference=ref, synthetic=sets, weights=w, runtime=runtime, pix2pix=pix2pix,
                    physics=physics, max_images=max_images, seed=seed, kid_subsets=kid_subsets,
                    kid_subset_size=kid_subset_size, feature_layer=feature_layer, progress=not quiet)
    typer.echo((out / "synthesis.md").read_text())
    typer.echo(f"wrote {', '.join(result['outputs'].values())}")


def register(app: typer.Typer) -> None:
    app.command("evaluate-synthesis")(evaluate_synthesis_cmd)
