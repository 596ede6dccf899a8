"""Shared fixtures for the models tests: a synthetic LGE phantom, the data root, untrained weights."""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Callable

import numpy as np
import pytest

from models.volume import Volume
from tests.support.require import missing

def data_dir() -> Path:
    from pipeline.datasets.paths import data_root

    return data_root()


@pytest.fixture(scope="session")
def shared_data() -> Path:
    root = data_dir()
    if not (root / "emidec" / "images").is_dir() or not (root / "myops2020").is_dir():
        missing("data", f"shared data not found at {root} (set LGENODE_DATA_DIR)")
    return root


def make_phantom(
    rows: int = 200,
    cols: int = 240,
    centre: tuple[float, float] = (90.0, 130.0),
    r_cavity: float = 18.0,
    r_outer: float = 27.0,
    n_slices: int = 3,
    scale: float = 1.0,
) -> tuple[np.ndarray, np.ndarray]:
    """LGE-like phantom (image, labels), both (n, rows, cols); sizes in pixels times ``scale``.

    Body ellipse (mid grey), bright blood pool (1), dark myocardial ring (2), a bright infarct
    sector (3) with a dark MVO core (4) on the ring; slices shrink slightly towards the apex.
    """
    rr, cc = np.mgrid[0:rows, 0:cols].astype(np.float32)
    img = np.zeros((n_slices, rows, cols), np.float32)
    lab = np.zeros((n_slices, rows, cols), np.uint8)
    body = ((rr - rows / 2) / (0.45 * rows)) ** 2 + ((cc - cols / 2) / (0.47 * cols)) ** 2 <= 1
    for k in range(n_slices):
        shrink = 1.0 - 0.08 * k
        rc, ro = r_cavity * scale * shrink, r_outer * scale * shrink
        d = np.hypot(rr - centre[0], cc - centre[1])
        ang = np.arctan2(rr - centre[0], cc - centre[1])
        cavity, ring = d <= rc, (d > rc) & (d <= ro)
        infarct = ring & (ang > 0.2) & (ang < 1.4)
        mvo = infarct & (ang > 0.6) & (ang < 1.0) & (d > rc + 0.3 * (ro - rc)) & (d < ro - 0.3 * (ro - rc))
        img[k][body] = 300
        img[k][cavity] = 900
        img[k][ring] = 60
        img[k][infarct] = 1000
        img[k][mvo] = 80
        lab[k][cavity], lab[k][ring], lab[k][infarct], lab[k][mvo] = 1, 2, 3, 4
    rng = np.random.default_rng(0)
    img = img + rng.normal(0, 15, img.shape).astype(np.float32)
    return np.clip(img, 0, None), lab


def phantom_volume(
    pixels: np.ndarray, spacing: tuple[float, float] = (0.75, 0.75), slice_spacing: float = 10.0
) -> Volume:
    n = pixels.shape[0]
    positions = np.array([[0.0, 0.0, k * slice_spacing] for k in range(n)])
    return Volume(
        pixels=pixels,
        pixel_spacing=spacing,
        row_direction=np.array([1.0, 0.0, 0.0]),
        column_direction=np.array([0.0, 1.0, 0.0]),
        positions=positions,
        slice_spacing=slice_spacing if n > 1 else None,
        slice_thickness=8.0,
    )


@pytest.fixture
def phantom() -> Callable[..., tuple[np.ndarray, np.ndarray]]:
    return make_phantom


@pytest.fixture
def volume_of() -> Callable[..., Volume]:
    return phantom_volume


def _keras_or_skip():
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    try:
        import keras
        import tensorflow  # noqa: F401  (the reference runtime and the ONNX export need it)
    except Exception as exc:  # pragma: no cover - depends on the environment
        pytest.skip(f"keras/tensorflow not importable: {exc}")
    if keras.backend.backend() != "tensorflow":
        pytest.skip(f"tests build and export models under the TensorFlow backend, not {keras.backend.backend()}")
    return keras


@pytest.fixture(scope="session")
def keras_tf():
    return _keras_or_skip()


@pytest.fixture(scope="session")
def untrained_weights(tmp_path_factory, keras_tf) -> Path:
    """A complete weights folder with UNTRAINED networks (fixed seed): .keras, .onnx and model.json."""
    from models.networks import build_localiser, build_segmenter
    from models.runtime import export_onnx

    out = tmp_path_factory.mktemp("weights")
    keras_tf.utils.set_random_seed(1234)
    build_segmenter().save(out / "segmenter.keras")
    build_localiser().save(out / "localiser.keras")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # np.object probe inside keras' tf2onnx shim
        export_onnx(out / "segmenter.keras", out / "segmenter.onnx")
        export_onnx(out / "localiser.keras", out / "localiser.onnx")
    (out / "model.json").write_text(
        json.dumps({"name": "test-untrained", "version": "0.0.1-test", "segmenter": "segmenter",
                    "localiser": "localiser", "roi_size": 128, "target_spacing_mm": 1.25, "n_classes": 5})
    )
    return out
