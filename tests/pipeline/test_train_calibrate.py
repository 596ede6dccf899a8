"""The CV quality threshold carried over to the ensemble's score scale (pipeline/train/calibrate.py).

Real ONNX networks: the shipped weights as member 0 and a perturbed copy as member 1, scored on
synthetic oblique volumes laid out as MyoPS ``unlabelled/``.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from tests.pipeline.conftest import write_myops
from tests.shipped import shipped_member



def _member(dst: Path, perturb: float | None) -> Path:
    dst.mkdir(parents=True)
    for name in ("localiser.onnx", "model.json", "segmenter.onnx"):
        shutil.copy2(shipped_member() / name, dst / name)
    if perturb is not None:
        import onnx
        from onnx import numpy_helper

        model = onnx.load(str(dst / "segmenter.onnx"))
        rng = np.random.default_rng(7)
        for init in model.graph.initializer:  # every conv kernel a little off: a different member
            w = numpy_helper.to_array(init)
            if w.ndim == 4 and w.dtype == np.float32:
                init.CopyFrom(numpy_helper.from_array(
                    (w * (1 + perturb * rng.standard_normal(w.shape))).astype(np.float32), init.name))
        onnx.save(model, str(dst / "segmenter.onnx"))
    return dst


@pytest.fixture
def unseen(tmp_path) -> Path:
    root = write_myops(tmp_path / "data", n_cases=2, seed=3)
    base = root / "myops2020"
    (base / "unlabelled").mkdir()
    for p in base.glob("*_LGE.nii.gz"):
        shutil.move(str(p), base / "unlabelled" / p.name.replace("Case300", "Case400"))
    return root


def _cv_eval(tmp_path: Path) -> Path:
    d = tmp_path / "cv-eval"
    d.mkdir()
    recs = [{"case": f"c{i}", "quality": q, "dice": {"myocardium": m}}
            for i, (q, m) in enumerate([(0.9, 0.8), (0.6, 0.3), (0.88, 0.79), (0.91, 0.82)])]
    (d / "metrics.json").write_text(json.dumps({"summary": {}, "cases": recs}))
    return d


def test_identical_members_need_no_shift(tmp_path, unseen):
    from models.segment import clear_cache
    from pipeline.train.calibrate import ensemble_shift, unlabelled_volumes
    from pipeline.train.ensemble import assemble

    run = tmp_path / "cv"
    _member(run / "fold0", None)
    _member(run / "fold1", None)
    ens = assemble([run / "fold0", run / "fold1"], tmp_path / "ens", "t", "1", None)
    clear_cache()
    vols = unlabelled_volumes(str(unseen))
    assert len(vols) == 2
    shift = ensemble_shift(ens, vols, progress=False)
    assert shift.n_volumes == 2 and abs(shift.median) < 1e-6


def test_ensemble_command_ships_the_shifted_threshold(tmp_path, unseen):
    from models.segment import clear_cache
    from pipeline.cli import app

    run = tmp_path / "cv"
    _member(run / "fold0", None)
    _member(run / "fold1", 0.3)
    clear_cache()
    out = tmp_path / "ens"
    res = CliRunner().invoke(app, ["ensemble", str(run), "--out", str(out), "--version", "1",
                                   "--cv-eval", str(_cv_eval(tmp_path)), "--data-dir", str(unseen)])
    assert res.exit_code == 0, res.output
    doc = json.loads((out / "model.json").read_text())
    cv, shift = doc["training"]["quality_threshold_cv"], doc["training"]["quality_threshold_shift"]
    assert 0.6 < cv <= 0.88 and shift["n_volumes"] == 2
    # two different networks disagree somewhere, so the averaged softmax is less sharp
    assert shift["median"] < 0
    assert doc["quality_threshold"] == pytest.approx(cv + shift["median"], abs=1e-4)


def test_a_single_model_or_no_volumes_is_refused(tmp_path):
    from pipeline.train.calibrate import ensemble_shift

    with pytest.raises(ValueError, match="no volumes"):
        ensemble_shift(shipped_member(), [], progress=False)
    with pytest.raises(ValueError, match="not an ensemble"):
        ensemble_shift(shipped_member(), [tmp_path / "x.nii.gz"], progress=False)
