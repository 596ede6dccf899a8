"""LGENODE_REQUIRE: a missing tool or data set is a skip by default, an error when required, and
under the variable any skip fails the run."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.conftest import REPO
from tests.support.require import COMPONENTS, available, required

DATA_TIER_TEST = "tests/node/job/test_worker.py::test_load_stage_geometry_matches_nifti"


def test_components_parse(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LGENODE_REQUIRE", " dcmtk, data ,")
    assert required() == {"dcmtk", "data"}
    monkeypatch.setenv("LGENODE_REQUIRE", "all")
    assert required() == set(COMPONENTS)
    monkeypatch.setenv("LGENODE_REQUIRE", "dcmtk,orthnac")
    with pytest.raises(ValueError, match="orthnac"):
        required()


def test_every_component_can_be_checked() -> None:
    assert all(isinstance(available(c), bool) for c in COMPONENTS)


def _run(require: str | None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "LGENODE_REQUIRE"}
    env.update(LGENODE_DATA_DIR="/nonexistent", PYTHONPATH=str(REPO))
    if require is not None:
        env["LGENODE_REQUIRE"] = require
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", DATA_TIER_TEST],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_missing_data_skips_fails_when_required_and_any_skip_fails_a_strict_run() -> None:
    plain = _run(None)
    assert plain.returncode == 0 and "1 skipped" in plain.stdout, plain.stdout[-2000:]
    assert "research data not found" in plain.stdout  # -rs prints the reason
    required_data = _run("data")
    assert required_data.returncode == 1 and "1 error" in required_data.stdout, required_data.stdout[-2000:]
    other = _run("dcmtk")  # data not required: a skip, but a strict run fails on any skip
    assert other.returncode == 1 and "1 skipped" in other.stdout, other.stdout[-2000:]
    assert "LGENODE_REQUIRE is set and 1 test(s) skipped" in other.stdout
