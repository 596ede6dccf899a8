"""Assemble cross-validation fold runs into one shipped ensemble weights folder.

    OUT/
      model.json        "members": ["fold0", ...], "quality_threshold", "min_infarct_percent",
                        training facts
      fold0/segmenter.onnx, segmenter.keras, localiser.onnx, localiser.keras, model.json (the fold's own)
      ...

``models.segment`` loads every member and averages their softmax (and LV probabilities); the
quality threshold comes from the pooled cross-validation evaluation (``quality_flag`` →
``best_threshold`` of ``lgenode pipeline evaluate --fold all``), where every case was scored by
the fold model that did not train on it.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from pipeline.train.loop import LOCALISER_FILE, SEGMENTER_FILE

# model.json goes along so that each member folder stays a complete single model (what
# `evaluate --fold all --weights OUT` scores each fold with, e.g. after `quantize OUT`).
FILES = (SEGMENTER_FILE, LOCALISER_FILE, "segmenter.onnx", "localiser.onnx", "segmenter.int8.onnx",
         "localiser.int8.onnx", "model.json")


def assemble(fold_runs: list[Path], out: Path, name: str, version: str,
             quality_threshold: float | None, extra: dict[str, object] | None = None,
             min_infarct_percent: float = 0.0) -> Path:
    """Copy each fold run's inference files into ``out/fold{k}`` and write ``model.json``.

    Raises
    ------
    FileNotFoundError
        A fold run lacks its ONNX segmenter (the serving runtime): export it first.
    """
    members = []
    out.mkdir(parents=True, exist_ok=True)
    first_info: dict[str, object] = {}
    for run in fold_runs:
        run = Path(run)
        if not (run / "segmenter.onnx").exists():
            raise FileNotFoundError(f"{run}: no segmenter.onnx (run the ONNX export first)")
        member = run.name
        dst = out / member
        dst.mkdir(exist_ok=True)
        for f in FILES:
            if (run / f).exists():
                shutil.copy2(run / f, dst / f)
        members.append(member)
        if not first_info and (run / "model.json").exists():
            first_info = json.loads((run / "model.json").read_text())
    doc = {
        "name": name,
        "version": version,
        "segmenter": f"{members[0]}/segmenter",
        "localiser": f"{members[0]}/localiser" if (out / members[0] / "localiser.onnx").exists()
        else None,
        "members": members,
        "quality_threshold": quality_threshold,
        "min_infarct_percent": min_infarct_percent,
        "roi_size": first_info.get("roi_size", 128),
        "target_spacing_mm": first_info.get("target_spacing_mm", 1.25),
        "n_classes": first_info.get("n_classes", 5),
        "labels": first_info.get("labels"),
        "licence": first_info.get("licence"),
        "training": {**dict(first_info.get("training") or {}), "fold": "ensemble of CV folds",
                     **(extra or {})},
    }
    (out / "model.json").write_text(json.dumps(doc, indent=1) + "\n")
    return out
