"""`lgenode` — top-level command line.

Each package owns its commands (`node/cli.py`, `models/cli.py`, `pipeline/cli.py`); their
modules import heavy libraries (TensorFlow, pynetdicom) lazily inside the commands so that
`lgenode --help` stays fast.
"""

from __future__ import annotations

import typer

from models import cli as models_cli
from node import cli as node_cli
from pipeline import cli as pipeline_cli

app = typer.Typer(
    name="lgenode",
    help="Cardiac LGE AI node: DICOM receiver, LGE segmentation, SEG/SR writer, and the training lab.",
    no_args_is_help=True,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

node_cli.register(app)
models_cli.register(app)
app.add_typer(pipeline_cli.app, name="pipeline", help="Offline lab: data sets, training, evaluation.")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
