"""CLI plumbing of the lab commands (no training here)."""

from __future__ import annotations

import pytest
import typer
from typer.testing import CliRunner

from pipeline import commands
from pipeline.cli import app


@pytest.mark.parametrize("cmd", ["folds", "train", "evaluate", "cv-report"])
def test_help(cmd):
    res = CliRunner().invoke(app, [cmd, "--help"])
    assert res.exit_code == 0 and "Usage" in res.output


def test_parse_folds():
    assert commands._parse_folds("3", 5) == [3]
    assert commands._parse_folds("all", 5) == [0, 1, 2, 3, 4]
    assert commands._parse_folds("0,2", 5) == [0, 2]
    assert commands._parse_folds("full", 5) is None
    for bad in ("5", "x", "-1"):
        with pytest.raises(typer.BadParameter):
            commands._parse_folds(bad, 5)


def test_folds_command_writes_file(synthetic_data, tmp_path):
    out = tmp_path / "f.json"
    res = CliRunner().invoke(app, ["folds", "--data-dir", str(synthetic_data), "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert out.is_file() and "fold 4" in res.output
    again = CliRunner().invoke(app, ["folds", "--data-dir", str(synthetic_data), "--out", str(out)])
    assert "exists" in again.output  # never silently rewritten


def test_evaluate_rejects_unknown_format(tmp_path):
    res = CliRunner().invoke(app, ["evaluate", "--weights", str(tmp_path), "--out",
                                   str(tmp_path / "o"), "--format", "dicom"])
    assert res.exit_code != 0


@pytest.mark.parametrize("cmd", ["ensemble", "quantize"])
def test_help_of_shipping_commands(cmd):
    res = CliRunner().invoke(app, [cmd, "--help"])
    assert res.exit_code == 0 and "Usage" in res.output


@pytest.mark.data
def test_evaluate_fold_on_myops_scores_that_folds_myops_cases(myops_root, tmp_path):
    """`--fold K --format myops-nifti` scores the MyoPS volumes dealt to fold K (not its EMIDEC ids)."""
    import json

    from pipeline.datasets.folds import DEFAULT_FOLDS_FILE, load_folds

    res = CliRunner().invoke(app, ["evaluate", "--weights", "models/weights", "--out", str(tmp_path / "o"),
                                   "--format", "myops-nifti", "--data-dir", str(myops_root),
                                   "--folds", str(DEFAULT_FOLDS_FILE), "--fold", "1", "--quiet"])
    assert res.exit_code == 0, res.output
    scored = [c["case"] for c in json.loads((tmp_path / "o" / "metrics.json").read_text())["cases"]]
    assert sorted(scored) == sorted(load_folds(DEFAULT_FOLDS_FILE)["folds"][1]["val_myops"])
