"""Network builders: shapes, softmax, architecture pieces, .keras round trip, backend-agnostic source."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

pytestmark = [pytest.mark.tf, pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")]


def test_source_uses_no_tensorflow_calls():
    src = (Path(__file__).resolve().parents[2] / "models" / "networks.py").read_text()
    assert not re.search(r"^\s*(import|from)\s+tensorflow", src, re.M)
    assert not re.search(r"\btf\.", src)


def test_segmenter_output_is_softmax(keras_tf):
    from models.networks import build_segmenter

    keras_tf.utils.set_random_seed(0)
    model = build_segmenter()
    x = np.random.default_rng(0).random((2, 128, 128, 1), dtype=np.float32)
    y = keras_tf.ops.convert_to_numpy(model(x, training=False))
    assert y.shape == (2, 128, 128, 5) and y.dtype == np.float32
    np.testing.assert_allclose(y.sum(-1), 1.0, atol=1e-5)
    assert (y >= 0).all()
    assert 1_000_000 < model.count_params() < 5_000_000
    names = [layer.name for layer in model.layers]
    assert sum(n.endswith("_psi") for n in names) == 4  # one attention gate per skip
    assert sum(n.endswith("_add") and n.startswith(("enc", "dec", "bottleneck")) for n in names) == 9  # residual adds


def test_segmenter_options_and_validation(keras_tf):
    from models.networks import build_segmenter

    small = build_segmenter(input_shape=(64, 64, 1), n_classes=3, base_filters=8, depth=3, dropout=0.0)
    assert small.output_shape == (None, 64, 64, 3)
    with pytest.raises(ValueError):
        build_segmenter(input_shape=(100, 100, 1), depth=4)


def test_localiser_outputs_probability_map(keras_tf):
    from models.networks import build_localiser

    model = build_localiser()
    y = keras_tf.ops.convert_to_numpy(model(np.zeros((3, 128, 128, 1), np.float32), training=False))
    assert y.shape == (3, 128, 128, 1)
    assert (y >= 0).all() and (y <= 1).all()
    assert model.count_params() < 300_000


def test_keras_save_load_round_trip(keras_tf, tmp_path):
    from models.networks import build_segmenter

    keras_tf.utils.set_random_seed(3)
    model = build_segmenter(base_filters=8)
    path = tmp_path / "seg.keras"
    model.save(path)
    loaded = keras_tf.models.load_model(path, compile=False)
    x = np.random.default_rng(1).random((2, 128, 128, 1), dtype=np.float32)
    to_np = keras_tf.ops.convert_to_numpy
    np.testing.assert_array_equal(to_np(model(x, training=False)), to_np(loaded(x, training=False)))


def test_attention_gate_layer_serialises(keras_tf, tmp_path):
    from models.networks import AttentionGate

    skip = keras_tf.Input((16, 16, 8))
    gate = keras_tf.Input((8, 8, 16))
    out = AttentionGate(4, name="gate")([skip, gate])
    model = keras_tf.Model([skip, gate], out)
    model.save(tmp_path / "gate.keras")
    loaded = keras_tf.models.load_model(tmp_path / "gate.keras")
    rng = np.random.default_rng(2)
    a, b = rng.random((1, 16, 16, 8), dtype=np.float32), rng.random((1, 8, 8, 16), dtype=np.float32)
    ya = keras_tf.ops.convert_to_numpy(model([a, b]))
    assert ya.shape == (1, 16, 16, 8)
    assert (np.abs(ya) <= np.abs(a) + 1e-6).all()  # a gate only attenuates
    np.testing.assert_allclose(ya, keras_tf.ops.convert_to_numpy(loaded([a, b])), atol=1e-6)


@pytest.mark.slow  # a child Python importing TensorFlow
def test_training_steps_do_not_crash_under_onednn(keras_tf):
    """TF 2.21's oneDNN CPU kernels segfault in the backward pass of 1x1 stride-2 convolutions; the
    attention gates avoid them. A crash would kill pytest, so the steps run in a child process."""
    import os
    import subprocess
    import sys

    code = (
        "import numpy as np\n"
        "from models.networks import build_segmenter\n"
        "m = build_segmenter(base_filters=4, depth=2)\n"
        "m.compile(optimizer='adam', loss='sparse_categorical_crossentropy', run_eagerly=True)\n"
        "m.train_on_batch(np.random.rand(2, 128, 128, 1).astype('float32'), np.random.randint(0, 5, (2, 128, 128)))\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "TF_ENABLE_ONEDNN_OPTS"}
    env.update(KERAS_BACKEND="tensorflow", TF_CPP_MIN_LOG_LEVEL="2",
               PYTHONPATH=str(Path(__file__).resolve().parents[2]))
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
