"""`lgenode pipeline ...` commands."""

from __future__ import annotations

import typer

app = typer.Typer(no_args_is_help=True, help="Offline lab: data sets, training, evaluation.")


@app.command("to-dicom")
def to_dicom(
    case_or_nifti: str = typer.Argument(
        ..., help="A MyoPS case id (e.g. Case3001, looked up in the data folder) or a NIfTI file."
    ),
    out: str = typer.Option(..., "--out", help="Output folder (one subfolder per series)."),
    matrix: int | None = typer.Option(
        None, "--matrix", help="Resample every slice to MATRIX x MATRIX (square pixels, centre crop)."
    ),
    enhanced: bool = typer.Option(
        False, "--enhanced", help="Write one Enhanced MR multi-frame instance per series."
    ),
    seed: int | None = typer.Option(None, "--seed", help="Derive all UIDs from this seed (reproducible)."),
    cine: bool = typer.Option(True, "--cine/--no-cine", help="Also write the _C0 image as a CINE series."),
    data_dir: str | None = typer.Option(
        None, "--data-dir", help="Shared data root (default: $LGENODE_DATA_DIR or ../shared/data)."
    ),
) -> None:
    """Write a MyoPS NIfTI case as DICOM MR series with its real pixels and oblique geometry."""
    from pipeline.datasets.dicomize import dicomize_case

    result = dicomize_case(
        case_or_nifti, out, matrix=matrix, enhanced=enhanced, seed=seed, with_cine=cine,
        data_dir=data_dir,
    )
    typer.echo(
        f"{result.case_id}: {len(result.lge_files)} LGE and {len(result.cine_files)} cine file(s) in {out}"
    )


# Training / evaluation commands (folds, train, evaluate, cv-report) live in pipeline/commands.py.
from pipeline import commands as _lab_commands  # noqa: E402

_lab_commands.register(app)
__import__("pipeline.synth.commands", fromlist=["register"]).register(app)  # simulate, simulate-report, render
__import__("pipeline.experiment.commands", fromlist=["register"]).register(app)  # experiment, experiment-report
__import__("pipeline.synth.evaluate_synthesis_commands", fromlist=["register"]).register(app)  # evaluate-synthesis
__import__("pipeline.synth.pix2pix_commands", fromlist=["register"]).register(app)  # pix2pix-train, pix2pix-generate
__import__("pipeline.synth.cyclegan_commands", fromlist=["register"]).register(app)  # cyclegan-train, cyclegan-generate
