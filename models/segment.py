"""The one inference entry point: ``segment_volume(volume) -> SegmentationResult``.

Stages (timed separately): load models (cached per weights folder and runtime), preprocess
(resampling + normalisation + crop, ``models.preprocess``), localise (localiser network or
heuristic), segment (network), postprocess (anatomical rules on the ROI, ``models.postprocess``),
to_input_grid (uncrop + resample back).

Weights folder layout (default ``models/weights``; ``LGENODE_WEIGHTS_DIR`` overrides)::

    model.json           {"name", "version", "segmenter": "segmenter", "localiser": "localiser",
                          "roi_size": 128, "target_spacing_mm": 1.25, "n_classes": 5}
    segmenter.onnx       serving runtime (ONNX Runtime)
    segmenter.keras      reference runtime / source of the ONNX export
    localiser.onnx|.keras  optional: without it the LV is found by a heuristic
    MODEL_CARD.md

An ensemble lists its members in model.json (``"members": ["fold0", ...]``): each subfolder
holds its own segmenter and localiser files; softmax and LV probabilities are averaged over the
members, and their disagreement feeds the per-series ``Quality``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from models import postprocess as post
from models import preprocess as pp
from models.volume import Volume

log = logging.getLogger(__name__)

DEFAULT_WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"


class WeightsNotFoundError(FileNotFoundError):
    """No usable trained model in the weights folder."""


@dataclass
class ModelInfo:
    name: str
    version: str
    segmenter: str = "segmenter"
    localiser: str | None = "localiser"
    roi_size: int = pp.ROI_SIZE
    target_spacing_mm: float = pp.TARGET_SPACING_MM
    n_classes: int = pp.N_CLASSES
    members: list[str] = field(default_factory=list)  # ensemble: one subfolder per member
    quality_threshold: float | None = None  # quality score below this: "needs careful review"
    min_infarct_percent: float = 0.0  # smaller infarct (3+4, % of the wall) is reported as none
    extra: dict[str, object] = field(default_factory=dict)


@dataclass
class SegmentationResult:
    labels: np.ndarray  # (n, rows, cols) uint8 on the input grid, 0-4
    timings: dict[str, float]  # seconds per stage, plus "total"
    model_name: str
    model_version: str
    runtime: str
    centre: tuple[float, float]  # LV centre (row, col) on the resampled grid
    localised_by: str  # "network" | "heuristic"
    preprocess: pp.PreprocessInfo
    roi_labels: np.ndarray  # (n, ROI, ROI) uint8 after post-processing
    quality: "Quality | None" = None


@dataclass(frozen=True)
class Quality:
    """How much to trust one series' result, from the model's own (ensemble-averaged) softmax.

    ``score``: soft Dice between the averaged myocardium probability (classes 2+3+4) and the
    hard myocardium mask, in [0, 1]. A confident, consistent prediction scores near 1; where
    the ensemble members disagree, or one network is unsure, probabilities are spread and the
    score drops. ``infarct_pct_spread``: standard deviation over the members of their infarct %
    of the myocardium (percentage points; 0 with one member). ``needs_review``: score below the
    model's threshold (chosen on the cross-validation folds, in model.json).
    ``infarct_below_minimum``: the infarct % of the myocardium that was found but reported as none
    because it is under the model's ``min_infarct_percent`` (None when nothing was dropped), so a
    reader can tell "no enhancement" from "a speck below the reportable size".
    """

    score: float
    members: int
    infarct_pct_spread: float
    threshold: float | None
    needs_review: bool
    infarct_below_minimum: float | None = None
    min_infarct_percent: float = 0.0

    def to_dict(self) -> dict[str, object]:
        out: dict[str, object] = {
            "score": round(self.score, 4), "members": self.members,
            "infarct_pct_spread": round(self.infarct_pct_spread, 2),
            "threshold": self.threshold, "needs_review": self.needs_review}
        if self.min_infarct_percent:
            out["min_infarct_percent"] = self.min_infarct_percent
        if self.infarct_below_minimum is not None:
            out["infarct_below_minimum"] = round(self.infarct_below_minimum, 2)
        return out


def quality_from_probabilities(member_probs: np.ndarray, threshold: float | None) -> Quality:
    """``Quality`` of one series from the members' softmax, shape (m, n, H, W, C)."""
    probs = np.asarray(member_probs, dtype=np.float32)
    mean = probs.mean(axis=0)
    p_myo = mean[..., 2:].sum(axis=-1)
    hard = np.isin(mean.argmax(axis=-1), (2, 3, 4))
    denom = float(p_myo.sum() + hard.sum())
    score = 2.0 * float((p_myo * hard).sum()) / denom if denom > 0 else 0.0
    pcts = [post.infarct_percent(m.argmax(axis=-1)) for m in probs]
    spread = float(np.std(pcts)) if len(pcts) > 1 else 0.0
    needs = threshold is not None and score < threshold
    return Quality(score, int(probs.shape[0]), spread, threshold, bool(needs))


def weights_dir_default() -> Path:
    env = os.environ.get("LGENODE_WEIGHTS_DIR")
    return Path(env) if env else DEFAULT_WEIGHTS_DIR


def read_model_info(weights_dir: Path) -> ModelInfo:
    path = Path(weights_dir) / "model.json"
    if not path.exists():
        raise WeightsNotFoundError(_missing_message(Path(weights_dir), [path.name]))
    raw = json.loads(path.read_text())
    known = {k: raw[k] for k in ModelInfo.__dataclass_fields__ if k in raw and k != "extra"}
    info = ModelInfo(**{"name": "unnamed", "version": "0", **known})
    info.extra = {k: v for k, v in raw.items() if k not in known}
    return info


def _missing_message(weights_dir: Path, missing: list[str]) -> str:
    return (
        f"No trained model in {weights_dir}: missing {', '.join(missing)}.\n"
        "Trained weights are not bundled yet. To get some:\n"
        "  * train them: `lgenode pipeline train ...` (see DEVELOPERS.md), which writes segmenter.keras /\n"
        "    localiser.keras; export to ONNX with `python -c \"from models.runtime import export_onnx; "
        "export_onnx('segmenter.keras', 'segmenter.onnx')\"` (needs the `train` extra: tensorflow, tf2onnx);\n"
        "  * or copy a released weights folder (model.json, segmenter.onnx, localiser.onnx, MODEL_CARD.md)\n"
        "    and pass it with --weights DIR (or LGENODE_WEIGHTS_DIR)."
        + (
            "\nThis folder has segmenter.keras: export it as above, or use --runtime keras."
            if (weights_dir / "segmenter.keras").exists() and "segmenter.onnx" in missing
            else ""
        )
    )


def _check_weights(weights_dir: Path, info: ModelInfo, runtime: str) -> None:
    from models.runtime import weight_file

    stems = ([Path(m) / Path(info.segmenter).name for m in info.members] if info.members
             else [Path(info.segmenter)])
    missing = [str(weight_file(s, runtime)) for s in stems
               if not (weights_dir / weight_file(s, runtime)).exists()]
    if missing and runtime == "onnx-int8":
        raise WeightsNotFoundError(
            f"No int8 model in {weights_dir}: missing {', '.join(missing)}. Write it with "
            f"`lgenode pipeline quantize {weights_dir}` (needs the `train` extra), or use runtime onnx.")
    if missing:
        raise WeightsNotFoundError(_missing_message(weights_dir, missing))
    if info.roi_size != pp.ROI_SIZE or abs(info.target_spacing_mm - pp.TARGET_SPACING_MM) > 1e-6:
        raise ValueError(
            f"model {info.name} {info.version} was trained with roi_size={info.roi_size}, "
            f"target_spacing_mm={info.target_spacing_mm}; this code uses {pp.ROI_SIZE}, {pp.TARGET_SPACING_MM}"
        )


_cache: dict[tuple[str, str, tuple[float, ...]], object] = {}
_cache_lock = threading.Lock()


def _mtimes(weights_dir: Path) -> tuple[float, ...]:
    return tuple(sorted(p.stat().st_mtime for p in weights_dir.iterdir() if p.is_file()))


def load_model(weights_dir: Path | None = None, runtime: str = "onnx"):
    """(ModelInfo, models.runtime.Segmenter), cached per (folder, runtime, file times)."""
    from models.runtime import RUNTIMES, Segmenter

    if runtime not in RUNTIMES:
        raise ValueError(f"unknown runtime {runtime!r}; choose one of {RUNTIMES}")
    weights_dir = Path(weights_dir) if weights_dir is not None else weights_dir_default()
    if not weights_dir.is_dir():
        raise WeightsNotFoundError(_missing_message(weights_dir, ["the folder itself"]))
    info = read_model_info(weights_dir)
    _check_weights(weights_dir, info, runtime)
    key = (str(weights_dir.resolve()), runtime, _mtimes(weights_dir))
    with _cache_lock:
        if key not in _cache:
            seg = Segmenter.from_dir(weights_dir, runtime, info.segmenter, info.localiser,  # type: ignore[arg-type]
                                     members=info.members or None)
            if seg.localiser is None:
                log.warning("no localiser in %s: the LV is located by a heuristic", weights_dir)
            _cache[key] = (info, seg)
        return _cache[key]


def clear_cache() -> None:
    with _cache_lock:
        _cache.clear()


def segment_volume(
    volume: Volume,
    weights_dir: Path | None = None,
    runtime: str = "onnx",
    postprocess: bool = True,
) -> SegmentationResult:
    """Segment a stack of LGE slices; labels come back on the input grid (n, rows, cols) uint8."""
    timings: dict[str, float] = {}
    t_start = time.perf_counter()
    info, model = load_model(weights_dir, runtime)
    timings["load"] = time.perf_counter() - t_start

    localise_time = 0.0

    def timed_localiser(x: np.ndarray) -> np.ndarray:
        nonlocal localise_time
        t = time.perf_counter()
        out = model.localiser(x)
        localise_time += time.perf_counter() - t
        return out

    t = time.perf_counter()
    x, pinfo = pp.preprocess_volume(volume, localiser=timed_localiser if model.localiser is not None else None)
    timings["localise"] = localise_time
    timings["preprocess"] = time.perf_counter() - t - localise_time

    t = time.perf_counter()
    member_probs = model.member_probabilities(x)
    roi_labels = member_probs.mean(axis=0).argmax(axis=-1).astype(np.uint8)
    quality = quality_from_probabilities(member_probs, info.quality_threshold)
    timings["segment"] = time.perf_counter() - t

    t = time.perf_counter()
    if postprocess:
        roi_labels = post.apply_rules(roi_labels)
        minimum = float(info.min_infarct_percent or 0.0)
        found = post.infarct_percent(roi_labels)
        roi_labels = post.drop_small_infarct(roi_labels, minimum)
        quality = dataclasses.replace(quality, min_infarct_percent=minimum,
                                      infarct_below_minimum=found if 0 < found < minimum else None)
    timings["postprocess"] = time.perf_counter() - t

    t = time.perf_counter()
    labels = pp.postprocess_to_input_grid(roi_labels, pinfo)
    timings["to_input_grid"] = time.perf_counter() - t
    timings["total"] = time.perf_counter() - t_start
    log.info("segmented %d slices in %.2f s (%s)", labels.shape[0], timings["total"], runtime)
    return SegmentationResult(
        labels=labels,
        timings=timings,
        model_name=info.name,
        model_version=info.version,
        runtime=runtime,
        centre=pinfo.centre,
        localised_by=pinfo.localised_by,
        preprocess=pinfo,
        roi_labels=roi_labels,
        quality=quality,
    )
