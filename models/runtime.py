"""Serving runtimes: ONNX Runtime (default, CPUExecutionProvider) and Keras (reference).

A ``Predictor`` is a callable mapping a float32 batch (n, H, W, C) to the network's output as a
numpy array; both backends expose the same interface, so preprocessing (the localiser argument of
``models.preprocess.localise_lv``) and ``models.segment`` do not care which one runs.

ONNX export must run under the TensorFlow backend (exporting from JAX fails): ``export_onnx``
loads the ``.keras`` file under TensorFlow, in a subprocess if this process already uses another
Keras backend. It uses Keras' own ``model.export(format="onnx")`` (tf2onnx underneath) and falls
back to ``tf2onnx.convert.from_keras``; both were checked with keras 3.15 / TF 2.21 / tf2onnx 1.17
(max |difference| of softmax outputs ~1e-7), including a model trained and saved under the JAX
backend (jax 0.10.2 CPU) and exported through the subprocess path.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Literal

import numpy as np

log = logging.getLogger(__name__)

Runtime = Literal["onnx", "onnx-int8", "keras"]
RUNTIMES: tuple[str, ...] = ("onnx", "onnx-int8", "keras")
# File suffix per runtime: "onnx-int8" serves the statically quantised copies written by
# ``lgenode pipeline quantize`` (models.quantize) beside the float32 ONNX files.
SUFFIX: dict[str, str] = {"onnx": ".onnx", "onnx-int8": ".int8.onnx", "keras": ".keras"}


def weight_file(stem: Path | str, runtime: str) -> Path:
    """The file a runtime loads for a network stem (``segmenter`` -> ``segmenter.int8.onnx``)."""
    if runtime not in SUFFIX:
        raise ValueError(f"unknown runtime {runtime!r}; choose one of {RUNTIMES}")
    stem = Path(stem)
    return stem.with_name(stem.name + SUFFIX[runtime])
ONNX_OPSET = 17


class Predictor:
    """Common interface: ``predictor(x) -> np.ndarray``, processed in batches of ``batch_size``."""

    backend: str = "?"

    def __init__(self, path: Path, batch_size: int = 16) -> None:
        self.path = Path(path)
        self.batch_size = batch_size

    def _run(self, x: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def __call__(self, x: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(x, dtype=np.float32)
        parts = [self._run(x[i : i + self.batch_size]) for i in range(0, len(x), self.batch_size)]
        return np.concatenate(parts, axis=0) if parts else np.zeros((0,), np.float32)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.path.name})"


class OnnxPredictor(Predictor):
    backend = "onnx"

    def __init__(self, path: Path, batch_size: int = 16, threads: int | None = None) -> None:
        super().__init__(path, batch_size)
        import onnxruntime as ort

        opts = ort.SessionOptions()
        # No busy-waiting of idle worker threads: on a small shared CPU the spinning steals time
        # from the numpy/SimpleITK stages around inference.
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        if threads:
            opts.intra_op_num_threads = threads
        self.session = ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name

    def _run(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(self.session.run(None, {self.input_name: x})[0])


class KerasPredictor(Predictor):
    backend = "keras"

    def __init__(self, path: Path, batch_size: int = 16) -> None:
        super().__init__(path, batch_size)
        import keras

        import models.networks  # noqa: F401  (registers custom layers before loading)

        self.model = keras.models.load_model(str(path), compile=False)
        self.backend = f"keras/{keras.backend.backend()}"

    def _run(self, x: np.ndarray) -> np.ndarray:
        # predict_on_batch runs the compiled predict function (~2.5x faster than an eager call
        # under TF on CPU once traced; one trace per distinct batch size).
        return np.asarray(self.model.predict_on_batch(x))


def load_predictor(stem: Path, runtime: Runtime = "onnx") -> Predictor:
    """Load ``stem.onnx`` (runtime "onnx"), ``stem.int8.onnx`` ("onnx-int8") or ``stem.keras``."""
    path = weight_file(stem, runtime)
    if runtime == "keras":
        return KerasPredictor(path)
    return OnnxPredictor(path)


class MeanPredictor(Predictor):
    """Several predictors of the same output shape behind one callable: their mean (the
    ensemble's averaged softmax or LV probability)."""

    def __init__(self, members: list[Predictor]) -> None:
        if not members:
            raise ValueError("an ensemble needs at least one member")
        super().__init__(members[0].path, members[0].batch_size)
        self.members = list(members)
        self.backend = members[0].backend

    def outputs(self, x: np.ndarray) -> np.ndarray:
        """(m, ...) every member's output."""
        return np.stack([np.asarray(p(x), dtype=np.float32) for p in self.members])

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self.outputs(x).mean(axis=0)

    def __repr__(self) -> str:
        return f"MeanPredictor({len(self.members)} x {self.path.name})"


class Segmenter:
    """The networks of one model behind one runtime: a segmenter and an optional localiser, or
    an ensemble of such pairs (one per cross-validation fold) whose outputs are averaged."""

    def __init__(self, segmenter: Predictor | list[Predictor],
                 localiser: Predictor | list[Predictor] | None = None,
                 runtime: str = "onnx") -> None:
        segs = segmenter if isinstance(segmenter, list) else [segmenter]
        locs = localiser if isinstance(localiser, list) else (
            [localiser] if localiser is not None else [])
        self.segmenters: list[Predictor] = segs
        self.segmenter: Predictor = segs[0] if len(segs) == 1 else MeanPredictor(segs)
        self.localiser: Predictor | None = (None if not locs else
                                            locs[0] if len(locs) == 1 else MeanPredictor(locs))
        self.runtime = runtime

    @property
    def n_members(self) -> int:
        return len(self.segmenters)

    @classmethod
    def from_dir(cls, weights_dir: Path, runtime: Runtime = "onnx", segmenter: str = "segmenter",
                 localiser: str | None = "localiser", members: list[str] | None = None
                 ) -> "Segmenter":
        """Load ``segmenter`` (+ ``localiser``) from ``weights_dir``, or, with ``members``, the
        same file names from each member subfolder (an ensemble)."""
        weights_dir = Path(weights_dir)
        folders = [weights_dir / m for m in members] if members else [weights_dir]
        seg_name = Path(segmenter).name if members else segmenter
        loc_name = (Path(localiser).name if members else localiser) if localiser else None
        segs = [load_predictor(f / seg_name, runtime) for f in folders]
        locs = [load_predictor(f / loc_name, runtime) for f in folders
                if loc_name is not None and weight_file(f / loc_name, runtime).exists()]
        return cls(segs, locs or None, runtime)

    def member_probabilities(self, x: np.ndarray) -> np.ndarray:
        """(m, n, H, W, n_classes): each member's softmax."""
        return np.stack([np.asarray(p(x), dtype=np.float32) for p in self.segmenters])

    def probabilities(self, x: np.ndarray) -> np.ndarray:
        """(n, H, W, 1) float32 -> (n, H, W, n_classes) softmax (the members' mean)."""
        return self.segmenter(x)

    def predict_labels(self, x: np.ndarray) -> np.ndarray:
        """(n, H, W, 1) float32 -> (n, H, W) uint8 argmax labels."""
        return self.probabilities(x).argmax(axis=-1).astype(np.uint8)


# --------------------------------------------------------------------------------------------
# Export
# --------------------------------------------------------------------------------------------
def _export_in_process(keras_path: Path, onnx_path: Path, opset: int) -> None:
    import keras

    import models.networks  # noqa: F401

    model = keras.models.load_model(str(keras_path), compile=False)
    # keras' exporter refuses a model that was loaded but never called ("has never called")
    model(np.zeros((1, *model.input_shape[1:]), dtype=np.float32), training=False)
    try:
        model.export(str(onnx_path), format="onnx", verbose=False, opset_version=opset)
    except TypeError:  # older keras without opset_version / verbose keywords
        model.export(str(onnx_path), format="onnx")
    except Exception as exc:  # keras' exporter failed: use tf2onnx directly
        log.warning("keras ONNX export failed (%s); trying tf2onnx.convert.from_keras", exc)
        import tensorflow as tf
        import tf2onnx

        spec = (tf.TensorSpec((None, *model.input_shape[1:]), tf.float32, name="image"),)
        tf2onnx.convert.from_keras(model, input_signature=spec, opset=opset, output_path=str(onnx_path))


def export_onnx(keras_path: Path | str, onnx_path: Path | str, opset: int = ONNX_OPSET) -> Path:
    """Export a saved ``.keras`` model to ONNX (under the TensorFlow backend). Returns ``onnx_path``.

    Needs tensorflow + tf2onnx (the ``train`` extra). If Keras is already imported under another
    backend (e.g. JAX after GPU training), the export runs in a subprocess with
    ``KERAS_BACKEND=tensorflow``.
    """
    keras_path, onnx_path = Path(keras_path), Path(onnx_path)
    if not keras_path.exists():
        raise FileNotFoundError(keras_path)
    onnx_path.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    backend = None
    if "keras" in sys.modules:
        import keras

        backend = keras.backend.backend()
    elif os.environ.get("KERAS_BACKEND", "tensorflow") == "tensorflow":
        backend = "tensorflow"
    if backend == "tensorflow":
        _export_in_process(keras_path, onnx_path, opset)
    else:
        env = {**os.environ, "KERAS_BACKEND": "tensorflow"}
        code = (
            "import sys; from pathlib import Path; from models.runtime import _export_in_process; "
            "_export_in_process(Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3]))"
        )
        root = str(Path(__file__).resolve().parent.parent)
        env["PYTHONPATH"] = os.pathsep.join([root, env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
        subprocess.run([sys.executable, "-c", code, str(keras_path), str(onnx_path), str(opset)], env=env, check=True)
    log.info("exported %s -> %s in %.1f s", keras_path.name, onnx_path.name, time.perf_counter() - t0)
    return onnx_path
