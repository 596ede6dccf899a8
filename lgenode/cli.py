"""`lgenode`: the top-level command line.

Each package owns its commands (`node/cli.py`, `models/cli.py`, `pipeline/cli.py`) and imports
heavy libraries (TensorFlow, pynetdicom) inside the commands, so that `lgenode --help` stays
fast. The lab (`pipeline`) is imported only when a `lgenode pipeline ...` command runs: the node
does not depend on it, and the node's image ships without it.
"""

from __future__ import annotations

import typer

from models import cli as models_cli
from node import cli as node_cli

PIPELINE_HELP = "Offline lab: data sets, training, evaluation (`lgenode pipeline --help` lists its commands)."

app = typer.Typer(
    name="lgenode",
    help="Cardiac LGE AI node: DICOM receiver, LGE segmentation, SEG/SR writer, and the training lab.",
    no_args_is_help=True,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

node_cli.register(app)
models_cli.register(app)


@app.command("pipeline", help=PIPELINE_HELP, add_help_option=False,
             context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def pipeline(ctx: typer.Context) -> None:
    """Hand the arguments to the lab's own command line (`pipeline.cli.app`), imported only now."""
    try:
        from pipeline.cli import app as lab
    except ModuleNotFoundError as exc:
        if exc.name not in ("pipeline", "pipeline.cli"):
            raise
        typer.echo("the lab (package `pipeline`) is not installed here: `lgenode pipeline` needs the "
                   "source tree or the pipeline image (docker/pipeline.Dockerfile)", err=True)
        raise typer.Exit(2) from exc
    command = typer.main.get_command(lab)
    command.main(args=list(ctx.args) or ["--help"], prog_name="lgenode pipeline", standalone_mode=True)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
