"""`lgenode pipeline simulate | simulate-report | render` on a tmp EMIDEC-like data set."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from pipeline.cli import app


@pytest.mark.parametrize("cmd", ["simulate", "simulate-report", "render"])
def test_help(cmd):
    res = CliRunner().invoke(app, [cmd, "--help"])
    assert res.exit_code == 0 and "--out" in res.output or "--masks" in res.output


@pytest.mark.parametrize("strategy", ["synthetic", "hybrid", "fusion"])
def test_simulate_writes_masks_report_and_figure(tmp_path, synthetic_data, strategy):
    out = tmp_path / strategy
    def args(dest, *extra):
        return ["simulate", "--strategy", strategy, "--n", "6", "--out", str(dest), "--seed", "5",
                "--data-dir", str(synthetic_data), *extra]

    render = strategy == "synthetic"  # rendering + figure once is enough (keeps the tests fast)
    res = CliRunner().invoke(app, args(out, *(["--render", "--png"] if render else [])))
    assert res.exit_code == 0, res.output
    z = np.load(out / "masks.npz")
    assert z["masks"].shape == (6, 128, 128) and z["masks"].max() <= 4
    for name in ("realism.md", "realism.json", "realism_hist.png", "samples.json"):
        assert (out / name).exists(), name
    if render:
        assert z["images"].shape == (6, 128, 128)
        assert (out / "real_vs_physics.png").exists()
        assert len(list((out / "png").glob("mask_*.png"))) == 6
    doc = json.loads((out / "samples.json").read_text())
    assert doc["config"]["seed"] == 5 and len(doc["samples"]) == 6
    # same seed, same masks
    again = tmp_path / "again"
    assert CliRunner().invoke(app, args(again, "--no-report")).exit_code == 0
    assert np.array_equal(np.load(again / "masks.npz")["masks"], z["masks"])


def test_report_and_render_commands(tmp_path, synthetic_data):
    out = tmp_path / "s"
    res = CliRunner().invoke(app, ["simulate", "--n", "4", "--out", str(out), "--no-report",
                                   "--data-dir", str(synthetic_data)])
    assert res.exit_code == 0, res.output
    assert not (out / "realism.md").exists()
    res = CliRunner().invoke(app, ["simulate-report", "--masks", str(out), "--data-dir", str(synthetic_data)])
    assert res.exit_code == 0, res.output
    assert (out / "realism.md").exists()
    res = CliRunner().invoke(app, ["render", "--masks", str(out / "masks.npz"), "--out", str(tmp_path / "r")])
    assert res.exit_code == 0, res.output
    z = np.load(tmp_path / "r" / "pairs.npz")
    assert z["images"].shape == z["masks"].shape == (4, 128, 128)


def test_bad_strategy_and_missing_data(tmp_path):
    res = CliRunner().invoke(app, ["simulate", "--strategy", "gan", "--out", str(tmp_path)])
    assert res.exit_code != 0
    res = CliRunner().invoke(app, ["simulate", "--out", str(tmp_path), "--data-dir", str(tmp_path / "none")])
    assert res.exit_code == 2


def test_exclude_fold_keeps_validation_cases_out(tmp_path, synthetic_data):
    folds = tmp_path / "folds.json"
    assert CliRunner().invoke(app, ["folds", "--data-dir", str(synthetic_data), "--out", str(folds),
                                    "--n-folds", "2"]).exit_code == 0
    val = set(json.loads(folds.read_text())["folds"][0]["val"])
    out = tmp_path / "s"
    res = CliRunner().invoke(app, ["simulate", "--strategy", "hybrid", "--n", "12", "--out", str(out),
                                   "--no-report", "--data-dir", str(synthetic_data),
                                   "--exclude-fold", "0", "--folds", str(folds)])
    assert res.exit_code == 0, res.output
    doc = json.loads((out / "samples.json").read_text())
    assert set(doc["config"]["exclude_cases"]) == val
    assert not {s["source"] for s in doc["samples"]} & val
