"""`lgenode pipeline ...` commands: `to-dicom` here; each part of the lab registers its own."""

from __future__ import annotations

import typer

from pipeline import commands as lab_commands
from pipeline.experiment import commands as experiment_commands
from pipeline.synth import commands as synth_commands
from pipeline.synth import cyclegan_commands, evaluate_synthesis_commands, pix2pix_commands

app = typer.Typer(no_args_is_help=True, add_completion=False, help="Offline lab: data sets, training, evaluation.",
                  context_settings={"help_option_names": ["-h", "--help"]})


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


lab_commands.register(app)  # folds, train, evaluate, cv-report
synth_commands.register(app)  # simulate, simulate-report, render
experiment_commands.register(app)  # experiment, experiment-report
evaluate_synthesis_commands.register(app)  # evaluate-synthesis
pix2pix_commands.register(app)  # pix2pix-train, pix2pix-generate
cyclegan_commands.register(app)  # cyclegan-train, cyclegan-generate
