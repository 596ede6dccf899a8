"""`lgenode pipeline simulate | simulate-report | render` (registered on ``pipeline.cli.app``)."""

from __future__ import annotations

from pathlib import Path

import typer

CONFIG_HELP = "Simulator YAML (default: pipeline/configs/simulate.yaml; every key documented there)."
DATA_HELP = "Shared data root or the emidec folder (overrides data_dir of the config)."


def _bank(cfg, data_dir: str | None):  # type: ignore[no-untyped-def]
    from pipeline.synth.shapes import load_real_bank

    return load_real_bank(data_dir or cfg.data_dir, exclude_cases=set(cfg.exclude_cases))


def simulate_cmd(
    out: Path = typer.Option(..., "--out", help="Output folder (masks.npz, samples.json, report files)."),
    strategy: str = typer.Option("synthetic", "--strategy",
                                 help="synthetic (shape model + lesion), hybrid (real wall + lesion) "
                                      "or fusion (real wall + kNN donor lesion)."),
    n: int = typer.Option(100, "--n", min=1, help="Number of masks."),
    config: Path | None = typer.Option(None, "--config", help=CONFIG_HELP),
    seed: int | None = typer.Option(None, "--seed", help="Overrides the config seed."),
    data_dir: str | None = typer.Option(None, "--data-dir", help=DATA_HELP),
    render: bool = typer.Option(False, "--render/--no-render",
                                help="Also write physics-rendered images (images array in masks.npz)."),
    png: bool = typer.Option(False, "--png", help="Also write one PNG per mask (and image) under png/."),
    report: bool = typer.Option(True, "--report/--no-report", help="Write the realism report (realism.md)."),
    exclude_fold: int | None = typer.Option(
        None, "--exclude-fold",
        help="Leave this cross-validation fold's validation cases out of everything the simulator learns "
             "from (synthetic data for training fold K must not see fold K)."),
    folds: Path | None = typer.Option(None, "--folds", help="Folds JSON (default: pipeline/configs/emidec_folds.json)."),
) -> None:
    """Simulate 0-4 label masks (128x128 LV-centred ROI) and write them with a realism report."""
    from pipeline.synth import simulate as sm

    cfg = sm.load_config(config)
    if seed is not None:
        cfg.seed = seed
    if exclude_fold is not None:
        from pipeline.datasets import folds as F

        _, val = F.split(F.load_folds(folds or F.DEFAULT_FOLDS_FILE), exclude_fold)
        cfg.exclude_cases = sorted(set(cfg.exclude_cases) | set(val))
    if strategy not in sm.STRATEGIES:
        raise typer.BadParameter(f"--strategy must be one of {', '.join(sm.STRATEGIES)}")
    try:
        bank = _bank(cfg, data_dir)
    except FileNotFoundError as exc:
        typer.echo(f"error: {exc} (set --data-dir or LGENODE_DATA_DIR)", err=True)
        raise typer.Exit(2) from exc
    sim = sm.Simulator(cfg, bank)
    samples = sm.simulate(sim, strategy, n, progress=True)
    images = None
    if render:
        import numpy as np

        from pipeline.synth import physics

        images = physics.render_many(np.stack([s.mask for s in samples]), cfg.seed,
                                     physics.RenderConfig.from_dict(cfg.render))
    path = sm.save_samples(samples, out, cfg, png=png, images=images)
    typer.echo(f"wrote {n} {strategy} masks to {path}")
    if report:
        import numpy as np

        from pipeline.synth.realism import write_report

        md = write_report(bank.masks, np.stack([s.mask for s in samples]), out, title=strategy)
        typer.echo(f"realism report: {md}")
    if images is not None:
        _grid(bank, images, np.stack([s.mask for s in samples]), out / "real_vs_physics.png", data_dir or cfg.data_dir)


def _grid(bank, images, masks, path: Path, data_dir: str | None) -> None:  # type: ignore[no-untyped-def]
    """Figure real vs synthetic: real ROI images of a few development cases beside renders."""
    import numpy as np

    import models.preprocess as pp
    from pipeline.datasets import emidec
    from pipeline.synth.physics import figure_grid

    files = emidec.slice_files(data_dir)
    real_x, real_y = [], []
    for cid in sorted({c for c in bank.case_ids if c.startswith("Case_P")})[:6]:
        case = emidec.load_case(cid, data_dir, files[cid])
        x, y, _ = pp.preprocess_training_stack(case.images, case.masks)
        k = int(np.argmax((y >= 3).sum(axis=(1, 2))))
        real_x.append(x[k, ..., 0])
        real_y.append(y[k])
    figure_grid(np.stack(real_x), np.stack(real_y), images, masks, str(path))
    typer.echo(f"figure: {path}")


def report_cmd(
    masks: Path = typer.Option(..., "--masks", help="masks.npz written by `simulate` (or a folder holding it)."),
    out: Path | None = typer.Option(None, "--out", help="Report folder (default: the masks' folder)."),
    config: Path | None = typer.Option(None, "--config", help=CONFIG_HELP),
    data_dir: str | None = typer.Option(None, "--data-dir", help=DATA_HELP),
    title: str = typer.Option("simulated", "--title", help="Name of the simulated set in the report."),
) -> None:
    """Realism report: simulated masks vs the real development masks (histograms + W1/KS table)."""
    import numpy as np

    from pipeline.synth import simulate as sm
    from pipeline.synth.realism import write_report

    path = masks / "masks.npz" if masks.is_dir() else masks
    synth = np.load(path)["masks"]
    cfg = sm.load_config(config)
    md = write_report(_bank(cfg, data_dir).masks, synth, out or path.parent, title=title)
    typer.echo(f"realism report: {md}")


def render_cmd(
    masks: Path = typer.Option(..., "--masks", help="masks.npz (or its folder) to render."),
    out: Path = typer.Option(..., "--out", help="Output folder: pairs.npz (images, masks) [+ png/]."),
    config: Path | None = typer.Option(None, "--config", help=CONFIG_HELP + " Uses its render section."),
    seed: int | None = typer.Option(None, "--seed", help="Overrides the config seed."),
    png: bool = typer.Option(False, "--png", help="Also write image/mask PNGs."),
) -> None:
    """Physics baseline: render LGE-like images from label masks (no training)."""
    import numpy as np
    from PIL import Image

    from pipeline.synth import physics
    from pipeline.synth import simulate as sm

    cfg = sm.load_config(config)
    path = masks / "masks.npz" if masks.is_dir() else masks
    m = np.load(path)["masks"]
    from tqdm import tqdm

    rcfg = physics.RenderConfig.from_dict(cfg.render)
    s = cfg.seed if seed is None else seed
    imgs = np.stack([physics.render(mk, np.random.default_rng([int(s), i, 1]), rcfg)[0]
                     for i, mk in enumerate(tqdm(m, desc="render", unit="image"))])
    out.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out / "pairs.npz", images=imgs, masks=m)
    if png:
        (out / "png").mkdir(exist_ok=True)
        for i in range(len(m)):
            Image.fromarray(sm._to_u8(imgs[i])).save(out / "png" / f"image_{i:05d}.png")
            Image.fromarray(m[i]).save(out / "png" / f"mask_{i:05d}.png")
    typer.echo(f"wrote {len(m)} image/mask pairs to {out / 'pairs.npz'}")


def register(app: typer.Typer) -> None:
    app.command("simulate")(simulate_cmd)
    app.command("simulate-report")(report_cmd)
    app.command("render")(render_cmd)
