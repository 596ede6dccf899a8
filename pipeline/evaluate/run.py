"""``evaluate``: predict every case through ``models.segment.segment_volume`` (exactly what the
node runs: same preprocessing, networks, runtime and post-processing) and score it.

``evaluate_cv``: one call for a whole cross-validation, each fold's validation cases predicted
with that fold's weights (RUN_DIR/fold{k}), pooled into one report plus a per-fold table.
``cv_report``: the same aggregation from existing per-fold evaluation folders.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections import Counter
from pathlib import Path

import numpy as np

from pipeline.evaluate import localisation, report
from pipeline.evaluate.cases import iter_cases, list_case_ids

log = logging.getLogger(__name__)
N_WORST = 5


def resolve_runtime(weights: Path, runtime: str) -> str:
    """'auto': ONNX Runtime when the run has been exported (what the node serves), else Keras."""
    if runtime != "auto":
        return runtime
    try:
        stem = json.loads((weights / "model.json").read_text()).get("segmenter", "segmenter")
    except (OSError, ValueError):
        stem = "segmenter"
    return "onnx" if (weights / f"{stem}.onnx").exists() else "keras"


def _units(fmt: str) -> dict[str, str]:
    return {"distance": "px", "volume": "px"} if fmt == "emidec-png" else \
        {"distance": "mm", "volume": "mL"}


def predict_and_score(weights: Path, fmt: str, data_dir: str | os.PathLike[str] | None,
                      case_ids: list[str], runtime: str = "auto", postprocess: bool = True,
                      progress: bool = True, desc: str = "evaluating"
                      ) -> tuple[list[dict[str, object]], list[tuple], dict[str, object]]:
    """(per-case records, the worst cases' arrays for overlays, run facts)."""
    from tqdm import tqdm

    from models.segment import load_model, segment_volume

    weights = Path(weights)
    rt = resolve_runtime(weights, runtime)
    info, _ = load_model(weights, rt)
    records: list[dict[str, object]] = []
    worst: list[tuple] = []  # (score, case_id, image, gt, pred)
    localised: dict[str, int] = {}
    t0 = time.perf_counter()
    for case in tqdm(iter_cases(fmt, data_dir, case_ids), total=len(case_ids), desc=desc,
                     unit="case", disable=not progress):
        res = segment_volume(case.volume, weights, runtime=rt, postprocess=postprocess)
        rec = report.score_case(case.case_id, res.labels, case.labels, case.spacing,
                                case.voxel_volume, merge_mvo_into_infarct=(fmt == "myops-nifti"))
        rec["localised_by"] = res.localised_by
        if res.quality is not None:  # the model's own confidence (models.segment.Quality)
            rec["quality"] = round(res.quality.score, 4)
            rec["infarct_pct_spread"] = round(res.quality.infarct_pct_spread, 2)
        # EMIDEC distances are in PNG pixels, which preprocessing takes to be this many mm.
        mm_per_unit = res.preprocess.resample.input_spacing[0] if fmt == "emidec-png" else 1.0
        rec.update(localisation.localisation_record(res.preprocess, case.labels, mm_per_unit))
        rec["seconds"] = float(res.timings.get("total", 0.0))
        localised[res.localised_by] = localised.get(res.localised_by, 0) + 1
        records.append(rec)
        worst.append((report.case_score(rec), case.case_id, case.volume.pixels, case.labels,
                      res.labels))
        worst = sorted(worst, key=lambda w: (w[0], w[1]))[:N_WORST]
    facts = {"weights": str(weights), "runtime": rt, "model_name": info.name,
             "model_version": info.version, "postprocess": postprocess,
             "quality_threshold": info.quality_threshold,
             "localised_by": localised, "seconds": time.perf_counter() - t0}
    return records, worst, facts


def evaluate(weights: Path, fmt: str, out: Path, data_dir: str | os.PathLike[str] | None = None,
             case_ids: list[str] | None = None, runtime: str = "auto", postprocess: bool = True,
             fold: int | None = None, folds_file: Path | None = None, progress: bool = True
             ) -> dict[str, object]:
    """Evaluate one weights folder on ``case_ids`` (default: every case of the data set)."""
    ids = case_ids if case_ids is not None else list_case_ids(fmt, data_dir)
    if not ids:
        raise ValueError("no cases to evaluate")
    records, worst, facts = predict_and_score(weights, fmt, data_dir, ids, runtime, postprocess,
                                              progress)
    from pipeline.datasets.paths import data_root

    meta = {"format": fmt, "data_dir": str(data_root(data_dir)), "fold": fold,
            "folds_file": str(folds_file) if folds_file else None,
            "no_mvo_class": fmt == "myops-nifti", **facts}
    summary = report.aggregate(records, _units(fmt), no_mvo_class=(fmt == "myops-nifti"),
                               quality_threshold=facts.get("quality_threshold"))  # type: ignore[arg-type]
    _write_worst(Path(out), worst)
    report.write_reports(Path(out), summary, records, meta)
    return summary


def _write_worst(out: Path, worst: list[tuple]) -> None:
    for score, cid, image, gt, pred in worst:
        report.overlay_case(out / "worst" / f"{cid}.png", image, gt, pred,
                            f"{cid}  mean per-case Dice {score:.3f}")


def evaluate_cv(run_dir: Path, fmt: str, out: Path, folds_file: Path,
                data_dir: str | os.PathLike[str] | None = None, runtime: str = "auto",
                postprocess: bool = True, fold_ids: list[int] | None = None,
                progress: bool = True) -> dict[str, object]:
    """Every fold's validation cases with RUN_DIR/fold{k}; writes OUT/fold{k}/ and the pooled OUT/."""
    from pipeline.datasets import folds as F

    doc = F.load_folds(folds_file)
    ks = fold_ids if fold_ids is not None else list(range(int(doc["n_folds"])))  # type: ignore
    for k in ks:
        val = F.validation_ids(doc, k, fmt)
        if not val:
            raise ValueError(f"{folds_file}: fold {k} has no {fmt} validation cases")
        evaluate(Path(run_dir) / f"fold{k}", fmt, Path(out) / f"fold{k}", data_dir, val,
                 runtime, postprocess, fold=k, folds_file=folds_file, progress=progress)
    return cv_report([Path(out) / f"fold{k}" for k in ks], Path(out))


def cv_report(eval_dirs: list[Path], out: Path) -> dict[str, object]:
    """Pool several evaluation folders (one per fold) into one report; per-fold rows kept."""
    records: list[dict[str, object]] = []
    per_fold: dict[str, dict[str, object]] = {}
    metas = []
    worst: list[tuple[float, str, Path]] = []
    for d in eval_dirs:
        doc = json.loads((Path(d) / "metrics.json").read_text())
        meta, recs = doc["meta"], doc["cases"]
        seen = {r["case"] for r in records}
        dup = seen & {r["case"] for r in recs}
        if dup:
            raise ValueError(f"{d}: cases already counted in another fold: {sorted(dup)[:5]}")
        records.extend(recs)
        metas.append(meta)
        label = str(meta.get("fold")) if meta.get("fold") is not None else Path(d).name
        per_fold[label] = doc["summary"]
        for r in recs:
            png = Path(d) / "worst" / f"{r['case']}.png"
            if png.exists():
                worst.append((report.case_score(r), r["case"], png))
    fmts = {m["format"] for m in metas}
    if len(fmts) != 1:
        raise ValueError(f"evaluations of different formats cannot be pooled: {sorted(fmts)}")
    fmt = fmts.pop()
    # CV: the fold models carry no threshold; the pooled section's "best" is the one to ship
    thresholds = {m.get("quality_threshold") for m in metas} - {None}
    summary = report.aggregate(records, _units(fmt), no_mvo_class=(fmt == "myops-nifti"),
                               quality_threshold=thresholds.pop() if len(thresholds) == 1
                               else None)
    fold_means = [f["pooled_class_dice_mean"] for f in per_fold.values()
                  if f["pooled_class_dice_mean"] is not None]
    summary["across_folds"] = {
        "pooled_class_dice_mean": {"mean": float(np.mean(fold_means)) if fold_means else None,
                                   "sd": float(np.std(fold_means, ddof=1))
                                   if len(fold_means) > 1 else None}}
    meta = {"format": fmt, "weights": ", ".join(m["weights"] for m in metas),
            "runtime": ", ".join(sorted({m["runtime"] for m in metas})),
            "model_name": metas[0].get("model_name"),
            "model_version": "per fold", "postprocess": all(m.get("postprocess") for m in metas),
            "no_mvo_class": fmt == "myops-nifti", "evaluations": [str(d) for d in eval_dirs],
            "localised_by": dict(Counter(str(r["localised_by"]) for r in records))}
    out = Path(out)
    (out / "worst").mkdir(parents=True, exist_ok=True)
    # The per-fold folders already hold each fold's worst overlays: link the overall five.
    for _, cid, png in sorted(worst, key=lambda w: (w[0], w[1]))[:N_WORST]:
        dst = out / "worst" / f"{cid}.png"
        if dst.resolve() != png.resolve():
            dst.write_bytes(png.read_bytes())
    report.write_reports(out, summary, records, meta, per_fold)
    return summary
