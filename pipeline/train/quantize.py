"""int8 copies of a weights folder's networks, calibrated on cases each network trained on.

For every member (or the single model) of a weights folder: run the float32 model's own
preprocessing on calibration cases, record what its localiser and segmenter are fed, quantise
both (``models.quantize``) and check, on the same inputs, how many labels the int8 segmenter
keeps. A member that was trained with cross-validation fold k is calibrated without fold k's
validation cases, so the held-out evaluation of ``--runtime onnx-int8`` stays held out.
The facts go into ``model.json`` → ``int8``.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from models import preprocess as pp
from models.quantize import label_agreement, quantize_onnx
from models.runtime import OnnxPredictor, weight_file


@dataclass
class MemberCalibration:
    name: str  # "" for a single model
    fold: int | None  # the CV fold it did not train on, if known
    cases: list[str]


class _Recorder:
    """Wraps a localiser: answers as the float32 one does and keeps what it was asked."""

    def __init__(self, inner: OnnxPredictor) -> None:
        self.inner = inner
        self.seen: list[np.ndarray] = []

    def __call__(self, x: np.ndarray) -> np.ndarray:
        self.seen.append(np.asarray(x, dtype=np.float32))
        return self.inner(x)


def member_fold(name: str, info: dict[str, object]) -> int | None:
    m = re.fullmatch(r"fold(\d+)", name)
    if m:
        return int(m.group(1))
    training = info.get("training")
    fold = training.get("fold") if isinstance(training, dict) else None
    return fold if isinstance(fold, int) else None


def held_out(folds_doc: dict[str, object] | None, fold: int | None) -> set[str]:
    """Case ids of fold ``fold``'s validation (EMIDEC and MyoPS), which calibration leaves out."""
    if folds_doc is None or fold is None:
        return set()
    for f in folds_doc.get("folds", []):  # type: ignore[union-attr]
        if f.get("fold") == fold:
            return set(f.get("val", [])) | set(f.get("val_myops", []))
    return set()


def quantize_weights(weights: Path, cases: list[tuple[str, object]], folds_doc: dict[str, object] | None,
                     progress: bool = True) -> dict[str, object]:
    """Write ``*.int8.onnx`` for every network in ``weights``; returns the ``int8`` facts.

    ``cases``: (case id, volume) pairs to calibrate on (``pipeline.evaluate.cases.iter_cases``
    items); each member uses those not in its validation fold.
    """
    from tqdm import tqdm

    info = json.loads((weights / "model.json").read_text())
    members: list[str] = list(info.get("members") or [""])
    seg_name = Path(info.get("segmenter", "segmenter")).name
    loc_name = Path(info["localiser"]).name if info.get("localiser") else None
    facts: dict[str, object] = {"created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                                "method": "ONNX Runtime static QDQ, per-channel int8 weights, uint8 "
                                          "activations, min/max calibration", "members": {}}
    for member in tqdm(members, desc="quantising", unit="member", disable=not progress):
        folder = weights / member if member else weights
        fold = member_fold(member, info)
        skip = held_out(folds_doc, fold)
        use = [(cid, vol) for cid, vol in cases if cid not in skip]
        seg = OnnxPredictor(weight_file(folder / seg_name, "onnx"))
        loc = (OnnxPredictor(weight_file(folder / loc_name, "onnx"))
               if loc_name and weight_file(folder / loc_name, "onnx").exists() else None)
        rec = _Recorder(loc) if loc is not None else None
        xs = [pp.preprocess_volume(vol, localiser=rec)[0] for _, vol in use]  # type: ignore[arg-type]
        if not xs:
            raise ValueError(f"member {member or '(single)'}: no calibration cases left after "
                             f"leaving out fold {fold}'s validation")
        x_seg = np.concatenate(xs).astype(np.float32)
        quantize_onnx(seg.path, weight_file(folder / seg_name, "onnx-int8"), x_seg)
        int8 = OnnxPredictor(weight_file(folder / seg_name, "onnx-int8"))
        agree = label_agreement(seg(x_seg), int8(x_seg))
        entry: dict[str, object] = {"fold_left_out": fold, "calibration_cases": len(use),
                                    "calibration_slices": int(len(x_seg)),
                                    "segmenter_label_agreement": round(agree, 5)}
        if rec is not None and loc is not None and rec.seen:
            x_loc = np.concatenate(rec.seen)
            quantize_onnx(loc.path, weight_file(folder / loc_name, "onnx-int8"), x_loc)  # type: ignore[operator]
            loc8 = OnnxPredictor(weight_file(folder / loc_name, "onnx-int8"))  # type: ignore[operator]
            p32, p8 = loc(x_loc), loc8(x_loc)
            entry["localiser_mask_agreement"] = round(float(((p32 > 0.5) == (p8 > 0.5)).mean()), 5)
        facts["members"][member or "model"] = entry  # type: ignore[index]
    info["int8"] = facts
    tmp = weights / "model.json.tmp"
    tmp.write_text(json.dumps(info, indent=1) + "\n")
    os.replace(tmp, weights / "model.json")
    return facts
