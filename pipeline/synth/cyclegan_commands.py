"""`lgenode pipeline cyclegan-train | cyclegan-generate` (register with ``register(app)``).

Heavy imports (keras, tensorflow) happen inside the commands.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

DATA_HELP = "Shared data root or the myops2020 folder (default: $LGENODE_DATA_DIR or ../shared/data)."


def _split(spec: str | None) -> list[str] | None:
    if spec is None:
        return None
    s = spec.strip()
    return [] if s.lower() in ("", "none") else [c.strip() for c in s.split(",") if c.strip()]


def train_cmd(
    out: Path = typer.Option(..., "--out", help="Run folder (generator.keras, gan.json, history.json, curves.png, "
                                                "samples.png, MODEL_CARD.md, checkpoints/)."),
    data_dir: str | None = typer.Option(None, "--data-dir", help=DATA_HELP),
    epochs: int | None = typer.Option(None, "--epochs", min=1, help="Epochs (default 40; on --resume: the saved value)."),
    steps_per_epoch: int | None = typer.Option(None, "--steps-per-epoch", min=1,
                                               help="Updates per epoch (default 60)."),
    batch_size: int | None = typer.Option(None, "--batch-size", min=1, help="Slices per domain per step (default 8)."),
    base_filters: int | None = typer.Option(None, "--base-filters", min=4, help="Generator base filters (default 16)."),
    generator: str | None = typer.Option(None, "--generator", help="unet (default; faster, keeps anatomy in place) "
                                                                  "or resnet (the CycleGAN paper's net)."),
    crop_size: int | None = typer.Option(None, "--crop-size", help="Training crop of the 128 px ROI (default 96; "
                                                                  "multiple of 32 for the U-Net)."),
    pool_size: int | None = typer.Option(None, "--pool-size", min=0, help="Image pool per domain (default 50; 0: off)."),
    seed: int | None = typer.Option(None, "--seed", help="Seed of weights and batches (default 0)."),
    hold_out: str | None = typer.Option(
        None, "--hold-out",
        help="Comma list of labelled cases kept out of training for paired PSNR/SSIM "
             "(default Case3005,Case3010,Case3015; 'none' for no hold-out)."),
    exclude_cases: str | None = typer.Option(None, "--exclude-cases",
                                             help="Comma list of cases not used at all (e.g. a test split)."),
    unlabelled: bool | None = typer.Option(None, "--include-unlabelled/--labelled-only",
                                           help="Also train on the 25 unlabelled MyoPS cases (default: yes)."),
    resume: bool = typer.Option(False, "--resume", help="Continue from OUT/checkpoints with the saved settings "
                                                        "(options given here override them; a larger --epochs extends the run and "
                                                        "recomputes the learning-rate decay for the new total)."),
    quiet: bool = typer.Option(False, "--quiet", help="Less logging (the progress bar stays)."),
) -> None:
    """Train a CycleGAN cine (MyoPS bSSFP) -> LGE on unpaired 128x128 ROI slices; resumable."""
    from pipeline.commands import _logging, _tf_defaults

    _tf_defaults()
    _logging(not quiet)
    from pipeline.synth import cyclegan as cg

    overrides: dict[str, Any] = {k: v for k, v in {
        "epochs": epochs, "steps_per_epoch": steps_per_epoch, "batch_size": batch_size,
        "base_filters": base_filters, "generator": generator, "crop_size": crop_size, "pool_size": pool_size,
        "seed": seed, "hold_out": _split(hold_out), "exclude_cases": _split(exclude_cases),
        "include_unlabelled": unlabelled}.items() if v is not None}
    if generator is not None and generator not in cg.GENERATORS:
        raise typer.BadParameter(f"choose one of {cg.GENERATORS}", param_hint="--generator")
    try:
        if resume and (out / "gan.json").exists():
            cfg = cg.resume_config(out, overrides)
        else:
            cfg = cg.CycleGANConfig.from_dict(overrides)
        meta = cg.train(cfg, out, data_dir=data_dir, resume=resume, progress=True)
    except FileNotFoundError as exc:
        typer.echo(f"error: {exc} (set --data-dir or LGENODE_DATA_DIR)", err=True)
        raise typer.Exit(2) from exc
    except ValueError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    last = meta.get("last_epoch") or {}
    typer.echo(f"{out}: {meta.get('epochs_done')} epochs, {last.get('ms_per_step', float('nan')):.0f} ms/step, "
               f"held-out PSNR {last.get('val_psnr', float('nan')):.2f} dB SSIM {last.get('val_ssim', float('nan')):.3f}")


def generate_cmd(
    generator_dir: Path = typer.Option(..., "--generator", help="A cyclegan-train run folder (generator.keras + gan.json)."),
    out: Path = typer.Option(..., "--out", help="Output folder (pairs.npz, pairs.json, pairs.png)."),
    data_dir: str | None = typer.Option(None, "--data-dir", help=DATA_HELP),
    unlabelled: bool = typer.Option(False, "--include-unlabelled/--labelled-only",
                                    help="Also translate the unlabelled training cases into unlabelled.npz "
                                         "(images only; pairs.npz always holds labelled slices)."),
    held_out: bool = typer.Option(False, "--held-out",
                                  help="Translate the run's held-out cases instead, and add their real LGE "
                                       "(`real`) for paired PSNR/SSIM."),
    quiet: bool = typer.Option(False, "--quiet", help="Less logging."),
) -> None:
    """Fake LGE from MyoPS cine slices with the gd masks carried over: a synthetic (image, mask) source."""
    from pipeline.commands import _logging, _tf_defaults

    _tf_defaults()
    _logging(not quiet)
    from pipeline.synth import cyclegan as cg

    try:
        info = cg.generate(generator_dir, out, data_dir=data_dir, held_out=held_out, include_unlabelled=unlabelled)
    except (FileNotFoundError, ValueError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    msg = f"wrote {info['n']} pairs ({info['split']} cases) to {out / 'pairs.npz'}"
    if "paired_fake_vs_real" in info:
        p, b = info["paired_fake_vs_real"], info["paired_cine_vs_real_baseline"]
        msg += (f"; fake vs real LGE: PSNR {p['psnr_mean']:.2f} dB, SSIM {p['ssim_mean']:.3f} "
                f"(cine as LGE: {b['psnr_mean']:.2f} dB, {b['ssim_mean']:.3f})")
    typer.echo(msg)


def register(app: typer.Typer) -> None:
    app.command("cyclegan-train")(train_cmd)
    app.command("cyclegan-generate")(generate_cmd)

