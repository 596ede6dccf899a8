"""A GAN's run folder: atomic JSON and model files, checkpoints with resume, the epoch loop, inference.

A run folder holds the product (``generator.keras``), ``gan.json`` (settings, data, versions),
``history.json`` (one entry per epoch), figures, ``MODEL_CARD.md`` and ``checkpoints/``. Each
GAN keeps the checkpoint file names its runs were first written with (:class:`CheckpointLayout`),
so older runs resume.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import numpy as np
from keras import ops

from pipeline.synth.gan_layers import from_gan_range
from pipeline.synth.gan_steps import Steps

log = logging.getLogger(__name__)


# ------------------------------------------------------------------------------------------
# Files
# ------------------------------------------------------------------------------------------
def write_json(path: Path, doc: Any) -> None:
    """Write ``doc`` as indented JSON through a temporary file, so a reader never sees half a file.

    Parameters
    ----------
    path: pathlib.Path
        Destination.
    doc: Any
        JSON-able data; numpy scalars and arrays are converted.
    """
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(doc, indent=1, default=_json_default) + "\n")
    os.replace(tmp, path)


def _json_default(o: Any) -> Any:
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def read_gan_json(folder: str | os.PathLike[str], kind: str, required: bool = True) -> dict[str, Any]:
    """The ``gan.json`` of a run folder, checked to be of ``kind``.

    Parameters
    ----------
    folder: str | os.PathLike[str]
        Run folder.
    kind: str
        Expected ``kind`` (e.g. ``"pix2pix"``); a file without ``kind`` is accepted.
    required: bool
        Whether a missing ``gan.json`` is an error (else ``{}`` is returned).

    Returns
    -------
    dict[str, Any]
        The parsed file.

    Raises
    ------
    FileNotFoundError
        If the file is missing and ``required``.
    ValueError
        If the folder holds another kind of GAN.
    """
    path = Path(folder) / "gan.json"
    if not path.exists() and not required:
        return {}
    meta = json.loads(path.read_text())
    if meta.get("kind", kind) != kind:
        raise ValueError(f"{folder} holds a {meta.get('kind')} generator, not {kind}")
    return meta


def save_model(model: keras.Model, path: Path) -> None:
    """Save ``model`` (``.keras``: whole model; ``.weights.h5``: weights) through a temporary file."""
    suffix = ".weights.h5" if path.name.endswith(".weights.h5") else path.suffix
    tmp = path.with_name(path.name[: -len(suffix)] + ".tmp" + suffix)
    if suffix == ".weights.h5":
        model.save_weights(tmp)
    else:
        model.save(tmp)
    os.replace(tmp, path)


def versions() -> dict[str, str]:
    """Versions of Python, Keras (and its backend), numpy, TensorFlow and JAX for ``gan.json``.

    Package versions are read from their metadata, so TensorFlow is not imported under JAX.
    """
    from importlib import metadata

    out = {"python": platform.python_version(), "keras": keras.__version__, "backend": keras.backend.backend(),
           "numpy": np.__version__}
    for dist in ("tensorflow", "jax"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            try:
                out[dist] = metadata.version(f"{dist}-cpu")
            except metadata.PackageNotFoundError:
                pass
    return out


# ------------------------------------------------------------------------------------------
# Checkpoints
# ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class CheckpointLayout:
    """File names inside a GAN's ``checkpoints/`` folder.

    Parameters
    ----------
    nets: Mapping[str, str]
        Net name -> file; ``*.weights.h5`` holds the weights, ``*.keras`` the whole model.
    optimizers: Mapping[str, tuple[str, str]]
        Optimizer name -> (``.npz`` file, key pattern of its i-th variable, e.g. ``"opt_g_{i:04d}"``).
        Several optimizers (and extra arrays) may share one file.
    state: str
        JSON file ``{"epoch": n, ...}``, written last: it names the epoch the other files hold.
    rng: str
        ``.npz`` file of the nets' random-generator states (dropout); runs without it resume with
        freshly seeded generators.
    """

    nets: Mapping[str, str]
    optimizers: Mapping[str, tuple[str, str]]
    state: str
    rng: str = "rng.npz"


class Checkpoint:
    """Save and restore a GAN's nets, optimizers (their step count included), random generators and
    host state in one folder.

    Parameters
    ----------
    folder: pathlib.Path
        The ``checkpoints/`` folder.
    layout: CheckpointLayout
        Its file names.
    nets: Mapping[str, keras.Model]
        The nets, by the names of ``layout.nets``.
    optimizers: Mapping[str, keras.optimizers.Optimizer]
        The built optimizers, by the names of ``layout.optimizers``.
    steps: Steps | None
        The compiled steps, synced before saving and reloaded after restoring.
    """

    def __init__(self, folder: Path, layout: CheckpointLayout, nets: Mapping[str, keras.Model],
                 optimizers: Mapping[str, keras.optimizers.Optimizer], steps: Steps | None = None) -> None:
        if set(nets) != set(layout.nets) or set(optimizers) != set(layout.optimizers):
            raise ValueError("the checkpoint layout must name every net and optimizer")
        self.folder, self.layout, self.nets, self.optimizers, self.steps = folder, layout, nets, optimizers, steps

    def exists(self) -> bool:
        """Whether a completed checkpoint is in the folder."""
        return (self.folder / self.layout.state).exists()

    def read_state(self) -> dict[str, Any]:
        """The state JSON (``epoch`` and what the GAN stored with it)."""
        return dict(json.loads((self.folder / self.layout.state).read_text()))

    def save(self, epoch: int, state: Mapping[str, Any] | None = None,
             arrays: Mapping[str, Mapping[str, np.ndarray]] | None = None) -> None:
        """Write the checkpoint of ``epoch``.

        Parameters
        ----------
        epoch: int
            Last completed epoch.
        state: Mapping[str, Any] | None
            More JSON for the state file (history, settings, host random-generator states).
        arrays: Mapping[str, Mapping[str, numpy.ndarray]] | None
            More arrays by ``.npz`` file name, e.g. an image pool.
        """
        self.folder.mkdir(parents=True, exist_ok=True)
        if self.steps is not None:
            self.steps.sync()
        for name, net in self.nets.items():
            save_model(net, self.folder / self.layout.nets[name])
        files: dict[str, dict[str, np.ndarray]] = {k: dict(v) for k, v in (arrays or {}).items()}
        for name, (file, pattern) in self.layout.optimizers.items():
            for i, v in enumerate(self.optimizers[name].variables):
                files.setdefault(file, {})[pattern.format(i=i)] = np.asarray(ops.convert_to_numpy(v))
        files.setdefault(self.layout.rng, {}).update(_seed_states(self.nets))
        for file, content in files.items():
            _save_npz(self.folder / file, content)
        write_json(self.folder / self.layout.state, {"epoch": int(epoch), **(state or {})})

    def restore(self) -> tuple[int, dict[str, Any], dict[str, dict[str, np.ndarray]]]:
        """Load the checkpoint into the nets and optimizers.

        Returns
        -------
        tuple[int, dict[str, Any], dict[str, dict[str, numpy.ndarray]]]
            The epoch, the state JSON, and the arrays of every ``.npz`` file in the folder by file name.

        Raises
        ------
        FileNotFoundError
            If a file of the layout is missing (the random-generator file may be).
        ValueError
            If an optimizer's saved variables do not match its current ones.
        """
        state = self.read_state()
        for name, net in self.nets.items():
            path = self.folder / self.layout.nets[name]
            if path.name.endswith(".weights.h5"):
                net.load_weights(path)
            else:
                net.set_weights(keras.models.load_model(path, compile=False).get_weights())
        files = {f for f, _ in self.layout.optimizers.values()}
        files |= {p.name for p in self.folder.glob("*.npz") if not p.name.endswith(".tmp.npz")}
        arrays = {f: _load_npz(self.folder / f) for f in sorted(files)}
        for name, (file, pattern) in self.layout.optimizers.items():
            opt = self.optimizers[name]
            saved = arrays[file]
            n = sum(1 for i in range(len(saved)) if pattern.format(i=i) in saved)
            if n != len(opt.variables):
                raise ValueError(f"{self.folder / file}: {n} arrays of optimizer {name}, expected {len(opt.variables)}")
            for i, v in enumerate(opt.variables):
                v.assign(saved[pattern.format(i=i)])
        _restore_seed_states(self.nets, arrays.get(self.layout.rng, {}))
        if self.steps is not None:
            self.steps.reload()
        return int(state["epoch"]), state, arrays


def _save_npz(path: Path, arrays: Mapping[str, np.ndarray]) -> None:
    tmp = path.with_name(path.name[: -len(".npz")] + ".tmp.npz")
    np.savez(tmp, **arrays)
    os.replace(tmp, path)


def _load_npz(path: Path) -> dict[str, np.ndarray]:
    with np.load(path) as z:
        return {k: z[k] for k in z.files}


def _seed_variables(net: keras.Model) -> list[Any]:
    """State of the net's random generators: the non-trainable variables that are no weights."""
    weights = {id(w) for w in net.weights}
    return [v for v in net.non_trainable_variables if id(v) not in weights]


def _seed_states(nets: Mapping[str, keras.Model]) -> dict[str, np.ndarray]:
    return {f"{k}_{i:04d}": np.asarray(ops.convert_to_numpy(v))
            for k, net in nets.items() for i, v in enumerate(_seed_variables(net))}


def _restore_seed_states(nets: Mapping[str, keras.Model], saved: Mapping[str, np.ndarray]) -> None:
    for k, net in nets.items():
        for i, v in enumerate(_seed_variables(net)):
            if f"{k}_{i:04d}" in saved:
                v.assign(saved[f"{k}_{i:04d}"])


def check_resumable(saved: Mapping[str, Any], settings: Mapping[str, Any], keys: tuple[str, ...]) -> None:
    """Refuse to resume when a setting that shapes the nets or the data differs from the saved run.

    Raises
    ------
    ValueError
        Naming the differing settings.
    """
    diff = [k for k in keys if k in settings and saved.get(k) != settings[k]]
    if diff:
        raise ValueError(f"cannot resume: settings differ from the checkpoint in {', '.join(diff)}")


# ------------------------------------------------------------------------------------------
# Training loop
# ------------------------------------------------------------------------------------------
def train_epochs(step: Callable[[int, int], dict[str, float]], first_epoch: int, epochs: int,
                 steps_per_epoch: int, validate: Callable[[int], dict[str, float]],
                 end_epoch: Callable[[dict[str, Any]], None], *, progress: bool = True, desc: str = "gan",
                 postfix: Callable[[dict[str, float]], dict[str, str]] | None = None) -> None:
    """Run epochs ``first_epoch`` .. ``epochs`` (1-based) of ``steps_per_epoch`` steps each.

    Parameters
    ----------
    step: Callable[[int, int], dict[str, float]]
        ``step(epoch, index)``: one training step on the batch of (epoch, index); returns its losses.
    first_epoch: int
        First epoch to run (1 for a new run, the checkpoint's epoch + 1 on resume).
    epochs: int
        Last epoch.
    steps_per_epoch: int
        Steps per epoch.
    validate: Callable[[int], dict[str, float]]
        Extra history values after an epoch's steps (held-out scores, learning rate).
    end_epoch: Callable[[dict[str, Any]], None]
        Receives the epoch's history entry (``epoch``, the mean of each loss, ``ms_per_step``: median
        step time without a run's first, compiling, step; ``seconds``; the ``validate`` values) to
        checkpoint and write the run files.
    progress: bool
        Show a progress bar.
    desc: str
        Its label.
    postfix: Callable[[dict[str, float]], dict[str, str]] | None
        Losses to show on the bar.

    Raises
    ------
    FloatingPointError
        On a non-finite loss; the last checkpoint stays as it was.
    """
    from tqdm import tqdm

    bar = tqdm(total=epochs * steps_per_epoch, initial=(first_epoch - 1) * steps_per_epoch, desc=desc,
               unit="step", dynamic_ncols=True, disable=not progress)
    try:
        for epoch in range(first_epoch, epochs + 1):
            t0 = time.perf_counter()
            sums: dict[str, float] = {}
            times: list[float] = []
            for index in range(steps_per_epoch):
                ts = time.perf_counter()
                logs = step(epoch, index)
                times.append(time.perf_counter() - ts)
                bad = [k for k, v in logs.items() if not np.isfinite(v)]
                if bad:
                    raise FloatingPointError(f"non-finite {', '.join(bad)} at epoch {epoch} step {index}; "
                                             "the last checkpoint is kept")
                for k, v in logs.items():
                    sums[k] = sums.get(k, 0.0) + v
                bar.update(1)
                if postfix is not None:
                    bar.set_postfix(ep=epoch, **postfix(logs))
            entry: dict[str, Any] = {"epoch": epoch, **{k: v / steps_per_epoch for k, v in sums.items()},
                                     "ms_per_step": 1000.0 * float(np.median(times[1:] if len(times) > 1 else times))}
            entry.update(validate(epoch))
            entry["seconds"] = time.perf_counter() - t0
            end_epoch(entry)
            log.info("epoch %d: %s", epoch, {k: round(v, 4) for k, v in entry.items() if isinstance(v, float)})
    finally:
        bar.close()


# ------------------------------------------------------------------------------------------
# Inference
# ------------------------------------------------------------------------------------------
def run_generator(model: Callable[..., Any], inputs: np.ndarray, encode: Callable[[np.ndarray], np.ndarray],
                  batch_size: int = 16) -> np.ndarray:
    """Generator in inference mode over ``inputs`` in batches.

    Parameters
    ----------
    model: Callable[..., Any]
        The generator (tanh output).
    inputs: numpy.ndarray
        (N, H, W) images or label masks.
    encode: Callable[[numpy.ndarray], numpy.ndarray]
        Maps a batch of ``inputs`` to the generator's input (N, H, W, C).
    batch_size: int
        Inputs per forward pass.

    Returns
    -------
    numpy.ndarray
        (N, H, W) float32 in [0, 1] (``from_gan_range``), not renormalised.
    """
    outs = [np.asarray(ops.convert_to_numpy(model(encode(inputs[s:s + batch_size]), training=False)))[..., 0]
            for s in range(0, len(inputs), batch_size)]
    return from_gan_range(np.concatenate(outs)) if outs else np.zeros(np.shape(inputs), np.float32)


def in_batches(fn: Callable[[np.ndarray], np.ndarray], x: np.ndarray, batch_size: int, progress: bool,
               desc: str) -> np.ndarray:
    """``fn`` over ``x`` in batches (with a progress bar), concatenated as float32."""
    from tqdm import tqdm

    starts = range(0, len(x), batch_size)
    parts = [fn(x[i:i + batch_size]) for i in tqdm(starts, desc=desc, unit="batch", disable=not progress)]
    return np.concatenate(parts).astype(np.float32) if parts else np.zeros(np.shape(x), np.float32)
