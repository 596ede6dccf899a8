"""The recorded budget says how the shared localiser was obtained (trained here, or reused)."""

from __future__ import annotations

from pathlib import Path

from pipeline.experiment.run import Arm, ExperimentConfig


def test_budget_records_localiser_epochs_or_its_source(tmp_path: Path) -> None:
    trained = ExperimentConfig(out=tmp_path, arms=[Arm("real")], folds=[0], localiser_epochs=40)
    assert trained.budget()["localiser_epochs"] == 40 and "localiser_from" not in trained.budget()
    reused = ExperimentConfig(out=tmp_path, arms=[Arm("real")], folds=[0], localiser_from=Path("runs/loc"))
    b = reused.budget()
    assert b["localiser_from"] == "runs/loc" and "localiser_epochs" not in b
    assert b["epochs"] == trained.budget()["epochs"]
