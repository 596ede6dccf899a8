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
    input: Path = typer.Argument(
        ..., metavar="INPUT", help="DICOM series folder, NIfTI file (.nii/.nii.gz) or folder of PNG slices."
    ),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder (created): labels.nii.gz and overlays/."),
    weights: Path | None = typer.Option(
        None, "--weights", "-w", help="Weights folder (model.json, segmenter.onnx ...). Default: models/weights "
        "or $LGENODE_WEIGHTS_DIR."
    ),
    runtime: str = typer.Option("onnx", "--runtime", "-r", help="onnx (ONNX Runtime, default), onnx-int8 (quantised copies from `lgenode pipeline quantize`) or keras (reference)."),
    no_postprocess: bool = typer.Option(False, "--no-postprocess", help="Skip the anatomical rules."),
) -> None:
    """Segment LV cavity, myocardium, infarct and no-reflow in an LGE stack.

    Writes OUT/labels.nii.gz (0 background, 1 LV cavity, 2 myocardium, 3 infarct, 4 no-reflow) with
    the input's geometry (a NIfTI input's own affine, qform/sform and voxel order, so the arrays
    compare voxel for voxel), and OUT/overlays/slice_NNN.png with a colour legend.

    Research use only, not for diagnosis. PNG slices carry no geometry: their pixels are taken to be
    1.25 mm, like the EMIDEC training slices.
    """
    import logging

    import numpy as np
    from tqdm import tqdm

    from models import LABELS
    from models.io import save_nifti
    from models.overlay import render_overlay
    from models.segment import WeightsNotFoundError, segment_volume

    logging.basicConfig(level=logging.WARNING)
    if runtime not in ("onnx", "onnx-int8", "keras"):
        raise typer.BadParameter("--runtime must be onnx, onnx-int8 or keras")
    with tqdm(total=4, desc="segment", unit="step") as bar:
        bar.set_postfix_str("reading input")
        volume = load_input(input)
        bar.update()
        bar.set_postfix_str(f"{volume.shape[0]} slices, running model")
        try:
            result = segment_volume(volume, weights, runtime=runtime, postprocess=not no_postprocess)
        except WeightsNotFoundError as exc:
            bar.close()
            typer.echo(str(exc), err=True)
            raise typer.Exit(2) from None
        bar.update()
        bar.set_postfix_str("writing labels")
        out.mkdir(parents=True, exist_ok=True)
        save_nifti(result.labels, volume, out / "labels.nii.gz")
        bar.update()
        overlay_dir = out / "overlays"
        overlay_dir.mkdir(exist_ok=True)
        for k in range(volume.shape[0]):
            bar.set_postfix_str(f"overlay {k + 1}/{volume.shape[0]}")
            picture = render_overlay(volume.pixels[k], result.labels[k], ref=volume.pixels)
            picture.save(overlay_dir / f"slice_{k:03d}.png")
        bar.update()
    counts = np.bincount(result.labels.ravel(), minlength=5)
    typer.echo(
        f"model {result.model_name} {result.model_version} ({result.runtime}), LV found by {result.localised_by}"
    )
    typer.echo("pixels: " + ", ".join(f"{LABELS[c]} {int(counts[c])}" for c in range(1, 5)))
    typer.echo("timings (s): " + ", ".join(f"{k} {v:.3f}" for k, v in result.timings.items()))
    typer.echo(f"wrote {out / 'labels.nii.gz'} and {volume.shape[0]} overlays in {overlay_dir}")


def register(app: typer.Typer) -> None:
    """Add the models commands to the top-level app."""
    app.command("segment")(segment)
