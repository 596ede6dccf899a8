"""Keras callbacks: history.json + curves PNG after every epoch, step timing, best checkpoint."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import keras
import numpy as np

from pipeline.train.curves import plot_curves


def _jsonable(v: object) -> object:
    try:
        f = float(v)  # numpy / backend scalars
    except (TypeError, ValueError):
        return str(v)
    return f if math.isfinite(f) else None


class HistoryWriter(keras.callbacks.Callback):
    """Appends each epoch's logs (+ ms/step, learning rate) to ``history.json``; redraws curves."""

    def __init__(self, json_path: Path, png_path: Path | None, title: str = "",
                 extra: dict[str, object] | None = None):
        super().__init__()
        self.json_path, self.png_path, self.title = Path(json_path), png_path, title
        self.extra = dict(extra or {})
        self.epochs: list[dict[str, object]] = []
        self._t_batch = 0.0
        self._batch_times: list[float] = []
        self._t_epoch = 0.0

    def on_epoch_begin(self, epoch, logs=None):
        self._batch_times = []
        self._t_epoch = time.perf_counter()

    def on_train_batch_begin(self, batch, logs=None):
        self._t_batch = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        self._batch_times.append(time.perf_counter() - self._t_batch)

    def on_epoch_end(self, epoch, logs=None):
        row: dict[str, object] = {"epoch": epoch + 1}
        row.update({k: _jsonable(v) for k, v in (logs or {}).items()})
        bt = self._batch_times[1:] or self._batch_times  # first step includes tracing/compile
        row["ms_per_step"] = 1000.0 * float(np.median(bt)) if bt else None
        row["epoch_seconds"] = time.perf_counter() - self._t_epoch
        try:
            row["learning_rate"] = float(keras.ops.convert_to_numpy(
                self.model.optimizer.learning_rate))
        except Exception:  # noqa: BLE001 - schedules etc.: the value is informative only
            pass
        self.epochs.append(row)
        self.write()

    def write(self) -> None:
        doc = {**self.extra, "epochs": self.epochs}
        self.json_path.write_text(json.dumps(doc, indent=1) + "\n")
        if self.png_path is not None and self.epochs:
            plot_curves(self.epochs, self.png_path, self.title)


class NonFiniteStop(keras.callbacks.Callback):
    """Stop at once when the training loss is NaN/inf (and say so), instead of wasting epochs."""

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            self.model.stop_training = True
            self.stopped = True
