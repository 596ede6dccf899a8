"""`lgenode` loads the lab (`pipeline`) only for `lgenode pipeline ...`: the node's commands and
its image work without it."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from tests.conftest import REPO

NODE_COMMANDS = [["--help"], ["serve", "--help"], ["send", "--help"], ["echo", "--help"], ["jobs", "--help"],
                 ["series", "--help"], ["segment", "--help"], ["db", "upgrade", "--help"],
                 ["config", "check", "--config", "config/node.yaml"]]

PROBE = """
import json, sys
from typer.testing import CliRunner
import lgenode.cli
codes = [CliRunner().invoke(lgenode.cli.app, args).exit_code for args in json.loads(sys.argv[1])]
lab = sorted(m for m in sys.modules if m == "pipeline" or m.startswith("pipeline."))
print(json.dumps({"codes": codes, "lab": lab}))
"""


def _probe(commands: list[list[str]]) -> dict:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    r = subprocess.run([sys.executable, "-c", PROBE, json.dumps(commands)], cwd=REPO, env=env,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


def test_node_commands_do_not_import_the_lab() -> None:
    got = _probe(NODE_COMMANDS)
    assert got["codes"] == [0] * len(NODE_COMMANDS)
    assert got["lab"] == []


def test_pipeline_command_loads_the_lab() -> None:
    got = _probe([["pipeline", "to-dicom", "--help"], ["pipeline", "no-such-command"]])
    assert got["codes"] == [0, 2]  # the lab's own parser answered both
    assert "pipeline.cli" in got["lab"]
