"""Docker files cannot be built on the development machines: check what can be checked here —
every COPY source exists, installed extras exist in pyproject.toml, entry points are real
commands of the CLI."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
from typer.testing import CliRunner

REPO = Path(__file__).resolve().parents[1]


def _instructions(path: Path) -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", path.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            op, _, rest = line.partition(" ")
            out.append((op.upper(), rest.strip()))
    return out


@pytest.mark.parametrize("name", ["node.Dockerfile", "pipeline.Dockerfile"])
def test_dockerfile_sources_and_extras_exist(name):
    ins = _instructions(REPO / "docker" / name)
    assert ins[0][0] == "FROM" and "python:3.11" in ins[0][1]
    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    for op, rest in ins:
        if op == "COPY":
            *srcs, _dst = rest.split()
            for s in srcs:
                assert (REPO / s).exists(), f"{name}: COPY {s} does not exist"
        if op == "RUN":
            for group in re.findall(r'pip install "?\.\[([^\]]+)\]', rest):
                for extra in group.split(","):
                    assert extra in extras, f"{name}: extra {extra} not in pyproject.toml"


def test_pipeline_image_entrypoint_runs_pipeline_commands():
    import json

    from lgenode.cli import app

    ins = dict(_instructions(REPO / "docker" / "pipeline.Dockerfile"))
    assert json.loads(ins["ENTRYPOINT"]) == ["lgenode", "pipeline"]
    assert "LGENODE_DATA_DIR=/data" in ins["ENV"]
    for cmd in ("simulate", "train", "evaluate", "experiment"):
        res = CliRunner().invoke(app, ["pipeline", cmd, "--help"])
        assert res.exit_code == 0, (cmd, res.output)


def test_node_image_holds_what_the_node_imports_and_not_the_lab():
    import ast

    copied = {rest.split()[0] for op, rest in _instructions(REPO / "docker" / "node.Dockerfile") if op == "COPY"}
    assert {"lgenode", "node", "models"} <= copied and "pipeline" not in copied
    ours = {"lgenode", "node", "models", "pipeline", "dicomstudy", "tests"}
    for package in ("node", "models"):
        for path in (REPO / package).rglob("*.py"):
            for item in ast.walk(ast.parse(path.read_text())):
                names = ([a.name for a in item.names] if isinstance(item, ast.Import)
                         else [item.module or ""] if isinstance(item, ast.ImportFrom) and not item.level else [])
                for name in names:
                    top = name.split(".")[0]
                    assert top not in ours or top in copied, f"{path.relative_to(REPO)} imports {name}"
