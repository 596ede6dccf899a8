"""Commands owned by `models` (mounted at the top level of `lgenode`).

Heavy libraries (onnxruntime, keras, pydicom, SimpleITK) are imported inside the commands so that
`lgenode --help` stays fast.
"""

from __future__ import annotations

from pathlib import Path

import typer


def load_input(path: Path):
    """A DICOM series folder, a NIfTI file or a folder of PNG slices -> `Volume`."""
    from models.io import load_dicom_series, load_nifti, load_png_stack

    name = path.name.lower()
    if path.is_file() and (name.endswith(".nii") or name.endswith(".nii.gz")):
        return load_nifti(path)
    if path.is_file() and name.endswith(".png"):
        return load_png_stack([path])
    if path.is_dir():
        pngs = list(path.glob("*.png"))
        others = [p for p in path.iterdir() if p.is_file() and p.suffix.lower() != ".png"]
        if pngs and not others:
            return load_png_stack(path)
        return load_dicom_series(path)
    if path.is_file():
        return load_dicom_series([path])
    raise typer.BadParameter(f"{path} does not exist")


def segment(
    inputs: list[Path] = typer.Argument(
        ..., metavar="INPUT...", help="DICOM series folder(s), NIfTI file(s) (.nii/.nii.gz) or folder(s) of PNG slices."
    ),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder (created): labels.nii.gz, result.json and "
                             "overlays/; with several inputs one subfolder each, summary.csv and contact_sheet.png."),
    weights: Path | None = typer.Option(
        None, "--weights", "-w", help="Weights folder (model.json, segmenter.onnx ...). Default: models/weights "
        "or $LGENODE_WEIGHTS_DIR."
    ),
    runtime: str = typer.Option("onnx", "--runtime", "-r", help="onnx (ONNX Runtime, default), onnx-int8 (quantised copies from `lgenode pipeline quantize`) or keras (reference)."),
    no_postprocess: bool = typer.Option(False, "--no-postprocess", help="Skip the anatomical rules."),
) -> None:
    """Segment LV cavity, myocardium, infarct and no-reflow in LGE stacks, with measurements and a quality flag.

    Writes OUT/labels.nii.gz (0 background, 1 LV cavity, 2 myocardium, 3 infarct, 4 no-reflow) with
    the input's geometry (a NIfTI input's own affine, qform/sform and voxel order, so the arrays
    compare voxel for voxel), OUT/result.json (volumes, infarct and MVO % of the LV myocardium, the
    quality score and "needs careful review" flag, how the LV was found, timings) and
    OUT/overlays/slice_NNN.png. Several inputs (e.g. a new centre's series, to see how the model
    does there before trusting it): OUT/<name>/ each, OUT/summary.csv and OUT/contact_sheet.png
    (per input, the slice with most myocardium). One input that fails does not stop the others.

    Research use only, not for diagnosis. PNG slices carry no geometry: their pixels are taken to be
    1.25 mm, like the EMIDEC training slices.
    """
    import logging

    from tqdm import tqdm

    from models.segment import WeightsNotFoundError

    logging.basicConfig(level=logging.WARNING)
    if runtime not in ("onnx", "onnx-int8", "keras"):
        raise typer.BadParameter("--runtime must be onnx, onnx-int8 or keras")
    batch = len(inputs) > 1
    names = _output_names(inputs) if batch else [""]
    rows: list[dict[str, object]] = []
    sheet: list[tuple[str, object]] = []
    for src, name in tqdm(list(zip(inputs, names)), desc="segment", unit="series", disable=not batch):
        dst = out / name if batch else out
        try:
            row, tile = _segment_one(src, dst, weights, runtime, not no_postprocess, quiet=batch)
        except WeightsNotFoundError as exc:
            typer.echo(str(exc), err=True)
            raise typer.Exit(2) from None
        except typer.BadParameter:
            if not batch:
                raise
            row, tile = {"input": str(src), "error": f"{src} does not exist"}, None
        except Exception as exc:  # an unreadable series: said, and the batch goes on
            if not batch:
                typer.echo(f"error: {src}: {type(exc).__name__}: {exc}", err=True)
                raise typer.Exit(1) from None
            row, tile = {"input": str(src), "error": f"{type(exc).__name__}: {exc}"}, None
        rows.append({"name": name or src.name, **row})
        if tile is not None:
            sheet.append((name, tile))
    if batch:
        _write_summary(out, rows, sheet)
        failed = [r for r in rows if r.get("error")]
        typer.echo(f"{len(rows) - len(failed)} of {len(rows)} segmented; {out / 'summary.csv'}, "
                   f"{out / 'contact_sheet.png'}")
        for r in failed:
            typer.echo(f"error: {r['input']}: {r['error']}", err=True)
        if failed:
            raise typer.Exit(1)


SUMMARY_COLUMNS = ["name", "input", "slices", "localised_by", "quality", "needs_review", "infarct_percent",
                   "mvo_percent", "myocardium_ml", "lv_cavity_ml", "seconds", "error"]


def _output_names(inputs: list[Path]) -> list[str]:
    """One folder name per input: the file or folder name without .nii(.gz), unique."""
    names: list[str] = []
    for p in inputs:
        base = p.name
        for ext in (".nii.gz", ".nii"):
            if base.lower().endswith(ext):
                base = base[: -len(ext)]
        base = base or "input"
        name, k = base, 2
        while name in names:
            name, k = f"{base}_{k}", k + 1
        names.append(name)
    return names


def _segment_one(src: Path, out: Path, weights: Path | None, runtime: str, postprocess: bool,
                 quiet: bool) -> tuple[dict[str, object], object]:
    """Segment one input into ``out``; returns its summary row and a contact-sheet tile."""
    import json

    import numpy as np
    from tqdm import tqdm

    from models import LABELS
    from models.io import save_nifti
    from models.measurements import compute_measurements
    from models.overlay import render_overlay
    from models.segment import segment_volume

    with tqdm(total=4, desc="segment", unit="step", disable=quiet) as bar:
        bar.set_postfix_str("reading input")
        volume = load_input(src)
        bar.update()
        bar.set_postfix_str(f"{volume.shape[0]} slices, running model")
        result = segment_volume(volume, weights, runtime=runtime, postprocess=postprocess)
        bar.update()
        bar.set_postfix_str("writing labels")
        out.mkdir(parents=True, exist_ok=True)
        save_nifti(result.labels, volume, out / "labels.nii.gz")
        m = compute_measurements(result.labels, volume) if volume.voxel_volume_ml() > 0 else None
        q = result.quality.to_dict() if result.quality is not None else None
        doc = {"input": str(src), "model": {"name": result.model_name, "version": result.model_version,
                                            "runtime": result.runtime},
               "localised_by": result.localised_by, "quality": q,
               "measurements": m.to_dict() if m is not None else None,
               "timings_s": {k: round(v, 3) for k, v in result.timings.items()},
               "note": "research use only, not for diagnosis"}
        (out / "result.json").write_text(json.dumps(doc, indent=1) + "\n")
        bar.update()
        overlay_dir = out / "overlays"
        overlay_dir.mkdir(exist_ok=True)
        for k in range(volume.shape[0]):
            bar.set_postfix_str(f"overlay {k + 1}/{volume.shape[0]}")
            render_overlay(volume.pixels[k], result.labels[k], ref=volume.pixels).save(overlay_dir / f"slice_{k:03d}.png")
        bar.update()
    myo = np.isin(result.labels, (2, 3, 4)).sum(axis=(1, 2))
    k_best = int(np.argmax(myo))
    tile = render_overlay(volume.pixels[k_best], result.labels[k_best], ref=volume.pixels, legend=False)
    row: dict[str, object] = {
        "input": str(src), "slices": volume.shape[0], "localised_by": result.localised_by,
        "quality": q["score"] if q else None,  # already rounded by Quality.to_dict
        "needs_review": q["needs_review"] if q else None,
        "infarct_percent": round(m.infarct_percent_of_myocardium, 2) if m else None,
        "mvo_percent": round(m.mvo_percent_of_myocardium, 2) if m else None,
        "myocardium_ml": round(m.myocardium_ml, 2) if m else None,
        "lv_cavity_ml": round(m.lv_cavity_ml, 2) if m else None,
        "seconds": round(result.timings["total"], 3)}
    if not quiet:
        counts = np.bincount(result.labels.ravel(), minlength=5)
        typer.echo(f"model {result.model_name} {result.model_version} ({result.runtime}), "
                   f"LV found by {result.localised_by}")
        typer.echo("pixels: " + ", ".join(f"{LABELS[c]} {int(counts[c])}" for c in range(1, 5)))
        if m is not None:
            typer.echo(f"infarct {m.infarct_percent_of_myocardium:.1f} % and MVO {m.mvo_percent_of_myocardium:.1f} % "
                       f"of the LV myocardium ({m.myocardium_ml:.1f} mL); LV cavity {m.lv_cavity_ml:.1f} mL")
        if q is not None:
            if q["threshold"] is None:
                verdict = "this model has no review threshold"
            else:
                verdict = (f"threshold {q['threshold']}: "
                           + ("NEEDS CAREFUL REVIEW" if q["needs_review"] else "not flagged"))
            typer.echo(f"quality score {q['score']:.3f} ({q['members']} member(s)); {verdict}")
            if q.get("infarct_below_minimum") is not None:
                typer.echo(f"infarct reported as none: {q['infarct_below_minimum']} % found, below the "
                           f"model's minimum reportable infarct of {q['min_infarct_percent']} %")
        typer.echo("timings (s): " + ", ".join(f"{k} {v:.3f}" for k, v in result.timings.items()))
        typer.echo(f"wrote {out / 'labels.nii.gz'}, {out / 'result.json'} and {volume.shape[0]} overlays in {overlay_dir}")
    return row, tile


def _letterbox(tile, size: int):  # type: ignore[no-untyped-def]
    """``tile`` scaled to fit ``size`` x ``size`` with its aspect ratio kept (anatomy not stretched)."""
    from PIL import Image

    f = size / max(tile.width, tile.height)
    scaled = tile.resize((max(1, round(tile.width * f)), max(1, round(tile.height * f))))
    out = Image.new("RGB", (size, size), (0, 0, 0))
    out.paste(scaled, ((size - scaled.width) // 2, (size - scaled.height) // 2))
    return out


def _write_summary(out: Path, rows: list[dict[str, object]], sheet: list[tuple[str, object]]) -> None:
    """summary.csv (one row per input) and contact_sheet.png (one tile per segmented input)."""
    import csv

    from PIL import Image, ImageDraw

    from models.overlay import legend_strip

    out.mkdir(parents=True, exist_ok=True)
    with open(out / "summary.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=SUMMARY_COLUMNS, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    if not sheet:
        return
    size, cols = 256, min(5, len(sheet))
    by_name = {str(r["name"]): r for r in rows}
    n_rows = -(-len(sheet) // cols)
    legend = legend_strip(cols * size)
    canvas = Image.new("RGB", (cols * size, n_rows * size + legend.height), (0, 0, 0))
    for i, (name, tile) in enumerate(sheet):
        t = _letterbox(tile, size)
        r = by_name[name]
        d = ImageDraw.Draw(t)
        d.text((3, 3), f"{name}", fill=(255, 255, 255))
        d.text((3, 16), f"q {r['quality']}  infarct {r['infarct_percent']} %  LV: {r['localised_by']}",
               fill=(255, 140, 0) if r.get("needs_review") else (255, 255, 255))
        canvas.paste(t, ((i % cols) * size, (i // cols) * size))
    canvas.paste(legend, (0, n_rows * size))
    canvas.save(out / "contact_sheet.png")


def register(app: typer.Typer) -> None:
    """Add the models commands to the top-level app."""
    app.command("segment")(segment)
