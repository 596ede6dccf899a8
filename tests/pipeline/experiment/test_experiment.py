"""`lgenode pipeline experiment` end to end on a tiny synthetic EMIDEC-like set: two arms
(real only, real + a synthetic pairs.npz) trained with the same tiny budget, evaluated on the
fold's validation cases and compared; then resume and budget checks.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.tf
pytest.importorskip("keras")

REPO = Path(__file__).resolve().parents[3]
BUDGET = ["--epochs", "1", "--steps-per-epoch", "2", "--batch-size", "4", "--base-filters", "4",
          "--depth", "2", "--localiser-epochs", "1", "--n-boot", "200", "--quiet"]


def _lgenode(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO), "KERAS_BACKEND": "tensorflow"}
    return subprocess.run([sys.executable, "-m", "lgenode", "pipeline", *args], env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=900)


def _pairs(folder: Path, n: int = 8) -> Path:
    rng = np.random.default_rng(0)
    masks = np.zeros((n, 128, 128), np.uint8)
    masks[:, 34:94, 34:94] = 2
    masks[:, 49:79, 49:79] = 1
    masks[:, 34:44, 40:90] = 3
    masks[:, 36:40, 55:70] = 4
    images = (0.2 * rng.random((n, 128, 128)) + 0.25 * (masks == 1) + 0.8 * (masks == 3)
              ).astype(np.float32)
    folder.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(folder / "pairs.npz", images=images, masks=masks)
    return folder


@pytest.fixture(scope="module")
def experiment(synthetic_data, tmp_path_factory) -> tuple[Path, Path, Path]:
    tmp = tmp_path_factory.mktemp("exp")
    folds = tmp / "folds.json"
    _pairs(tmp / "synth" / "fold0")
    out = tmp / "exp"
    proc = _lgenode(["experiment", "--data-dir", str(synthetic_data), "--folds", str(folds),
                     "--fold", "0", "--out", str(out), "--arm", "real",
                     "--arm", f"toy={tmp / 'synth' / 'fold{fold}'}", *BUDGET], tmp)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return out, folds, tmp


def test_experiment_writes_comparison(experiment):
    out, folds, _ = experiment
    doc = json.loads((out / "results.json").read_text())
    val = json.loads(folds.read_text())["folds"][0]["val"]
    assert doc["baseline"] == "real" and doc["cases"] == sorted(val)
    assert set(doc["arms"]) == {"real", "toy"}
    toy = doc["arms"]["toy"]
    # A pooled delta exists exactly where both arms' pooled Dice is defined (the class occurs in a
    # prediction or the ground truth of some case); then the 95 % interval brackets it.
    from pipeline.evaluate.metrics import CLASS_NAMES
    from pipeline.experiment.bootstrap import pooled_dice

    def arm_counts(arm: str) -> np.ndarray:
        recs = json.loads((out / arm / "eval" / "fold0" / "metrics.json").read_text())["cases"]
        return np.array([r["counts"] for r in recs])

    defined = np.isfinite(pooled_dice(arm_counts("real"))) & np.isfinite(pooled_dice(arm_counts("toy")))
    assert defined[1], "the LV cavity is in every case: its delta must be reported"
    expect = {name: bool(defined[c]) for c, name in CLASS_NAMES.items()} | {"mean": True}
    for k, has_delta in expect.items():
        d = toy["delta_pooled"][k]
        if not has_delta:
            assert d["delta"] is None or not np.isfinite(d["delta"]), k
            continue
        assert d["ci_lo"] is not None and d["ci_hi"] is not None, k
        assert d["ci_lo"] <= d["delta"] + 1e-9 and d["delta"] <= d["ci_hi"] + 1e-9, k
    md = (out / "results.md").read_text()
    assert "| toy |" in md and "95 % paired bootstrap" in md
    assert "only the cases whose ground truth has the structure" in md
    recs = json.loads((out / "real" / "eval" / "fold0" / "metrics.json").read_text())["cases"]
    with_myo = [r["dice"]["myocardium"] for r in recs if r["present"]["myocardium"]]
    got = doc["arms"]["real"]["per_case_dice_mean_present"]["myocardium"]
    assert got == pytest.approx(sum(with_myo) / len(with_myo))
    assert set(toy["delta_per_case_present"]) == {"myocardium", "infarct", "no_reflow"}
    assert (out / "deltas.png").stat().st_size > 1000
    # Same localiser for both arms; the toy arm really trained with its synthetic set.
    for arm in ("real", "toy"):
        assert (out / arm / "fold0" / "localiser.keras").is_file()
        assert (out / arm / "eval" / "fold0" / "metrics.json").is_file()
    seg = json.loads((out / "toy" / "fold0" / "train_config.json").read_text())["segmenter"]
    assert seg["synthetic"]["total"] == 8 and seg["synthetic"]["per_batch"] == 1
    real = json.loads((out / "real" / "fold0" / "train_config.json").read_text())["segmenter"]
    assert real["synthetic"] is None
    assert json.loads((out / "experiment.json").read_text())["budget"]["epochs"] == 1


def test_rerun_resumes_and_budget_change_is_refused(experiment, synthetic_data):
    out, folds, tmp = experiment
    before = (out / "toy" / "fold0" / "segmenter.keras").stat().st_mtime_ns
    args = ["experiment", "--data-dir", str(synthetic_data), "--folds", str(folds), "--fold", "0",
            "--out", str(out), "--arm", "real", "--arm", f"toy={tmp / 'synth' / 'fold{fold}'}"]
    proc = _lgenode([*args, *BUDGET], tmp)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (out / "toy" / "fold0" / "segmenter.keras").stat().st_mtime_ns == before
    changed = [*args, *BUDGET]
    changed[changed.index("--epochs") + 1] = "3"
    proc = _lgenode(changed, tmp)
    assert proc.returncode == 2 and "another budget" in proc.stderr
    rep = _lgenode(["experiment-report", "--out", str(out), "--n-boot", "100"], tmp)
    assert rep.returncode == 0 and "report:" in rep.stdout


def test_missing_synthetic_set_is_a_clear_error(synthetic_data, tmp_path):
    proc = _lgenode(["experiment", "--data-dir", str(synthetic_data), "--folds",
                     str(tmp_path / "f.json"), "--out", str(tmp_path / "x"), "--arm", "real",
                     "--arm", f"gan={tmp_path / 'nope' / 'fold{fold}'}", *BUDGET], tmp_path)
    assert proc.returncode == 2 and "arm gan, fold 0" in proc.stderr and "not found" in proc.stderr
    proc = _lgenode(["experiment", "--data-dir", str(synthetic_data), "--folds",
                     str(tmp_path / "f.json"), "--out", str(tmp_path / "x"), "--arm", "toy=a",
                     "--arm", "toy=b", *BUDGET], tmp_path)
    assert proc.returncode == 2 and "unique" in proc.stderr
