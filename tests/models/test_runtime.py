"""Serving runtimes: ONNX export and ONNX Runtime vs Keras agreement on real slices."""

from __future__ import annotations

import glob
import re
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from models import preprocess as pp
from models.runtime import KerasPredictor, OnnxPredictor, Segmenter, load_predictor

pytestmark = [pytest.mark.tf, pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")]


def emidec_rois(root: Path, n_cases: int = 3) -> np.ndarray:
    """Real EMIDEC slices preprocessed exactly as for training: (n, 128, 128, 1)."""
    by_case: dict[str, list[str]] = defaultdict(list)
    for p in sorted(glob.glob(str(root / "emidec" / "images" / "*.png"))):
        by_case[re.match(r"(Case_\w+?)_slice", Path(p).name).group(1)].append(p)  # type: ignore[union-attr]
    cases = sorted(by_case)[:: max(1, len(by_case) // n_cases)][:n_cases]
    xs = []
    for case in cases:
        imgs = np.stack([np.asarray(Image.open(p)) for p in by_case[case]])
        masks = np.stack([np.asarray(Image.open(p.replace("/images/", "/masks/"))) for p in by_case[case]])
        xs.append(pp.preprocess_training_stack(imgs, masks)[0])
    return np.concatenate(xs)


def test_onnx_and_keras_give_identical_labels_on_real_slices(untrained_weights, shared_data):
    x = emidec_rois(shared_data)
    assert len(x) >= 15
    onnx = Segmenter.from_dir(untrained_weights, "onnx")
    ker = Segmenter.from_dir(untrained_weights, "keras")
    p_onnx, p_keras = onnx.probabilities(x), ker.probabilities(x)
    assert p_onnx.shape == p_keras.shape == (len(x), 128, 128, 5)
    assert float(np.abs(p_onnx - p_keras).max()) < 1e-4
    np.testing.assert_array_equal(onnx.predict_labels(x), ker.predict_labels(x))
    # the untrained network is not constant: agreement is not trivial
    assert len(np.unique(ker.predict_labels(x))) > 1


def test_localiser_runtimes_agree(untrained_weights, phantom):
    img, _ = phantom(rows=256, cols=256)
    x, _ = pp.localiser_input(pp.normalize_intensity(img))
    a = load_predictor(untrained_weights / "localiser", "onnx")(x)
    b = load_predictor(untrained_weights / "localiser", "keras")(x)
    assert a.shape == b.shape == (3, 128, 128, 1)
    np.testing.assert_allclose(a, b, atol=1e-4)


def test_predictor_batches_match_single_calls(untrained_weights):
    pred = OnnxPredictor(untrained_weights / "segmenter.onnx", batch_size=4)
    x = np.random.default_rng(0).random((9, 128, 128, 1), dtype=np.float32)
    whole = pred(x)
    single = np.concatenate([pred(x[i : i + 1]) for i in range(9)])
    np.testing.assert_allclose(whole, single, atol=1e-5)
    assert isinstance(load_predictor(untrained_weights / "segmenter", "keras"), KerasPredictor)
    with pytest.raises(ValueError):
        load_predictor(untrained_weights / "segmenter", "torch")  # type: ignore[arg-type]


@pytest.mark.slow  # starts a second Python that imports TensorFlow
def test_export_runs_in_subprocess_when_backend_differs(untrained_weights, tmp_path, monkeypatch):
    """The JAX-trained case: keras imported under another backend -> export happens under TF in a child."""
    import keras

    from models import runtime

    calls = []
    monkeypatch.setattr(keras.backend, "backend", lambda: "jax")
    real_run = runtime.subprocess.run
    monkeypatch.setattr(runtime.subprocess, "run", lambda *a, **k: calls.append(a) or real_run(*a, **k))
    out = runtime.export_onnx(untrained_weights / "localiser.keras", tmp_path / "loc.onnx")
    assert calls and out.exists()
    x = np.zeros((1, 128, 128, 1), np.float32)
    np.testing.assert_allclose(OnnxPredictor(out)(x), OnnxPredictor(untrained_weights / "localiser.onnx")(x), atol=1e-6)
