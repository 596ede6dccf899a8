"""Static int8 quantisation of an exported ONNX network (ONNX Runtime's quantisation tool).

Why: the serving CPU has 2 cores and the v0.3 model is an ensemble of five segmenters; int8
convolutions (VNNI) run the segmenter ~2.3x faster than float32 on this machine
(``bench/infer --runtime``), which is what keeps the ensemble inside the latency target.

How: QDQ format, weights int8 per output channel, activations uint8 with ranges from min/max
over calibration batches (real network inputs, i.e. preprocessed ROI crops). Percentile
calibration fails on this graph in onnxruntime 1.32; min/max was measured to keep >99.5 % of
the labels. The result is written beside the float32 file (``segmenter.int8.onnx``) and served
with runtime ``onnx-int8``; the float32 file stays the reference.

Needs the ``onnx`` package (installed with the ``train`` extra, through tf2onnx).
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np

CALIBRATION_BATCH = 16


def quantize_onnx(src: Path | str, dst: Path | str, calibration: np.ndarray) -> Path:
    """Write an int8 (QDQ) copy of the float32 ONNX model ``src`` to ``dst``.

    ``calibration``: (n, H, W, C) float32 inputs as the network sees them in service.
    """
    import onnxruntime as ort
    from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat,
                                          QuantType, quantize_static)
    from onnxruntime.quantization.shape_inference import quant_pre_process

    src, dst = Path(src), Path(dst)
    x = np.ascontiguousarray(calibration, dtype=np.float32)
    if x.ndim != 4 or len(x) == 0:
        raise ValueError(f"calibration must be a non-empty (n, H, W, C) array, got shape {x.shape}")
    input_name = ort.InferenceSession(str(src), providers=["CPUExecutionProvider"]).get_inputs()[0].name

    class _Batches(CalibrationDataReader):
        def __init__(self) -> None:
            self._it: Iterator[np.ndarray] = iter(
                [x[i : i + CALIBRATION_BATCH] for i in range(0, len(x), CALIBRATION_BATCH)])

        def get_next(self) -> dict[str, np.ndarray] | None:
            b = next(self._it, None)
            return None if b is None else {input_name: b}

    dst.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="lgenode-quant-") as tmp:
        pre = Path(tmp) / "pre.onnx"
        # Shape inference + graph clean-up first (ONNX Runtime's recommended pre-processing);
        # the symbolic pass needs sympy, which the plain ONNX shape inference does not.
        quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
        tmp_dst = Path(tmp) / "int8.onnx"
        quantize_static(str(pre), str(tmp_dst), _Batches(), quant_format=QuantFormat.QDQ,
                        per_channel=True, activation_type=QuantType.QUInt8,
                        weight_type=QuantType.QInt8, calibrate_method=CalibrationMethod.MinMax,
                        nodes_to_exclude=_output_nodes(pre))
        shutil.move(str(tmp_dst), str(dst))
    return dst


def _output_nodes(model_path: Path) -> list[str]:
    """The nodes that make the graph's outputs, back through layout-only ops to the final softmax /
    sigmoid, stay float: quantised, probabilities would come in steps of 1/255 — too coarse for
    the ensemble mean and the quality score, which read probabilities, not only labels."""
    import onnx

    m = onnx.load(str(model_path))
    producer = {o: n for n in m.graph.node for o in n.output}
    keep: list[str] = []
    todo = [o.name for o in m.graph.output]
    while todo:
        node = producer.get(todo.pop())
        if node is None or node.name in keep:
            continue
        keep.append(node.name)
        if node.op_type in ("Transpose", "Reshape", "Identity", "Squeeze", "Unsqueeze"):
            todo.extend(node.input[:1])
    return keep


def label_agreement(reference: np.ndarray, other: np.ndarray) -> float:
    """Share of pixels whose argmax label is the same in two softmax outputs (n, H, W, K)."""
    return float((reference.argmax(axis=-1) == other.argmax(axis=-1)).mean())
