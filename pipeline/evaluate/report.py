"""Per-case scores, data-set aggregates, ``metrics.json`` / ``metrics.md`` and worst-case overlays.

What is reported (see ``pipeline/README.md`` for the definitions and their sources):
(a) per-class Dice for classes 1-4 POOLED over every slice of every case, and their mean over the
    classes present in the ground truth of the data set;
(b) EMIDEC per-case Dice (3-D over the case) for myocardium 2+3+4, infarct 3+4, no-reflow 4, with
    Dice = 1 when the structure is absent from both ground truth and prediction; mean and SD over
    cases, plus the mean over cases where the structure is present in the ground truth;
(c) myocardium HD95 (in-plane surface distances pooled over the case's slices; mm or pixels);
(d) per-case volume agreement (pixels or mL): bias, SD, 95 % limits, mean absolute difference,
    Pearson r, for LV cavity, myocardium, infarct and no-reflow;
(e) localisation: the LV centre error of the first stage and the share of the LV inside the ROI
    (``pipeline.evaluate.localisation``);
clinical agreement of infarct % and MVO % of the LV myocardium (``pipeline.evaluate.agreement``:
Lin's CCC, Pearson r, bias, SD, 95 % limits; ``agreement.png``, first in the report); and overlays of the five cases with the lowest mean of the three EMIDEC per-case Dice.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from pipeline.evaluate import agreement, localisation, min_infarct, quality
from pipeline.evaluate import metrics as M

VOLUME_STRUCTURES: dict[str, tuple[int, ...]] = {"lv_cavity": (1,), **M.STRUCTURES}
AGREEMENT_PNG = "agreement.png"


def score_case(case_id: str, pred: np.ndarray, gt: np.ndarray, spacing: tuple[float, float],
               voxel_volume: float, merge_mvo_into_infarct: bool = False) -> dict[str, object]:
    """All per-case numbers for one case (pure function of the label arrays)."""
    pred = np.asarray(pred, dtype=np.uint8)
    gt = np.asarray(gt, dtype=np.uint8)
    if pred.shape != gt.shape:
        raise ValueError(f"{case_id}: prediction {pred.shape} vs ground truth {gt.shape}")
    # Class table: where the ground truth has no MVO class (MyoPS: MVO is inside scar), a
    # predicted 4 is scored as 3; the structures (infarct = 3+4) need no such merge.
    pred_cls = np.where(pred == 4, 3, pred).astype(np.uint8) if merge_mvo_into_infarct else pred
    myo_p, myo_g = M.structure_mask(pred, (2, 3, 4)), M.structure_mask(gt, (2, 3, 4))
    hd = M.hd95(myo_p, myo_g, spacing)
    dice: dict[str, float | None] = dict(M.case_structure_dice(pred, gt))
    if merge_mvo_into_infarct:
        dice["no_reflow"] = None  # not labelled in the ground truth: no score
    rec: dict[str, object] = {
        "case": case_id,
        "n_slices": int(gt.shape[0]),
        "dice": dice,
        "present": {name: bool(M.structure_mask(gt, cls).any())
                    for name, cls in M.STRUCTURES.items()},
        "hd95_myocardium": None if math.isnan(hd) else hd,
        "hd95_slices_one_sided": M.slice_presence_mismatch(myo_p, myo_g),
        "volume_pred": {k: M.volume(M.structure_mask(pred, c), voxel_volume)
                        for k, c in VOLUME_STRUCTURES.items()},
        "volume_gt": {k: M.volume(M.structure_mask(gt, c), voxel_volume)
                      for k, c in VOLUME_STRUCTURES.items()},
        "counts": M.overlap_counts(pred_cls, gt).tolist(),
    }
    rec["percent"] = agreement.case_percentages(rec, no_mvo_class=merge_mvo_into_infarct)
    return rec


def case_score(rec: dict[str, object]) -> float:
    """Ranking score for 'worst cases': mean of the EMIDEC per-case Dice that are defined."""
    d = rec["dice"]  # type: ignore[index]
    vals = [d[k] for k in M.STRUCTURES if d.get(k) is not None]  # type: ignore[union-attr]
    return float(np.mean(vals)) if vals else float("nan")


def _stats(values: list[float]) -> dict[str, float | int | None]:
    v = np.asarray([x for x in values if x is not None and not math.isnan(x)], dtype=float)
    if v.size == 0:
        return {"n": 0, "mean": None, "sd": None, "median": None}
    return {"n": int(v.size), "mean": float(v.mean()),
            "sd": float(v.std(ddof=1)) if v.size > 1 else 0.0, "median": float(np.median(v))}


def aggregate(records: list[dict[str, object]], units: dict[str, str],
              no_mvo_class: bool = False, quality_threshold: float | None = None
              ) -> dict[str, object]:
    """Data-set level numbers from per-case records (records may come from several folds)."""
    counts = np.sum([np.asarray(r["counts"]) for r in records], axis=0) if records else \
        np.zeros((5, 3))
    class_dice = M.dice_from_counts(counts)
    per_class = {}
    for c, name in M.CLASS_NAMES.items():
        d = class_dice[c]
        per_class[name] = None if (math.isnan(d) or (no_mvo_class and c == 4)) else float(d)
    # Mean over the classes whose pooled Dice is defined (present in the ground truth or the
    # prediction): a class predicted but absent from the ground truth counts as 0.
    in_mean = [c for c in M.CLASS_NAMES if per_class[M.CLASS_NAMES[c]] is not None]
    mean = float(np.mean([class_dice[c] for c in in_mean])) if in_mean else None

    per_case = {}
    for name in M.STRUCTURES:
        all_vals = [r["dice"][name] for r in records]  # type: ignore[index]
        pos_vals = [r["dice"][name] for r in records if r["present"][name]]  # type: ignore
        per_case[name] = {"all_cases": _stats(all_vals), "cases_with_structure": _stats(pos_vals)}
    if no_mvo_class:
        per_case["no_reflow"]["note"] = "not labelled in this data set (MVO is inside scar)"
    hd = [r["hd95_myocardium"] for r in records]
    volumes = {}
    for k in VOLUME_STRUCTURES:
        if no_mvo_class and k == "no_reflow":
            continue
        p = [r["volume_pred"][k] for r in records]  # type: ignore[index]
        g = [r["volume_gt"][k] for r in records]  # type: ignore[index]
        volumes[k] = M.agreement(p, g)
    return {
        "n_cases": len(records),
        "n_slices": int(sum(int(r["n_slices"]) for r in records)),  # type: ignore[arg-type]
        "units": units,
        "pooled_class_dice": per_class,
        "pooled_class_dice_mean": mean,
        "pooled_classes_in_mean": [M.CLASS_NAMES[c] for c in in_mean],
        "per_case_dice": per_case,
        "hd95_myocardium": {**_stats(hd), "unit": units["distance"],
                            "cases_without_value": sum(1 for x in hd if x is None)},
        "volume_agreement": {"unit": units["volume"], **volumes},
        "localisation": {**localisation.summarise(records), "unit": units["distance"]},
        "clinical_agreement": {**agreement.summarise(records, no_mvo_class,
                                                     figure=AGREEMENT_PNG if records else None),
                               "infarct_presence": min_infarct.presence(records)},
        "quality_flag": quality.summarise(records, quality_threshold),
    }


def worst_cases(records: list[dict[str, object]], n: int = 5) -> list[dict[str, object]]:
    return sorted(records, key=lambda r: (case_score(r), str(r["case"])))[:n]


# ------------------------------------------------------------------------------------------
# Writing
# ------------------------------------------------------------------------------------------
def write_reports(out: Path, summary: dict[str, object], records: list[dict[str, object]],
                  meta: dict[str, object], folds: dict[str, dict[str, object]] | None = None
                  ) -> tuple[Path, Path]:
    out.mkdir(parents=True, exist_ok=True)
    doc = {"meta": meta, "summary": summary, "cases": records}
    if folds:
        doc["folds"] = folds
    jp = out / "metrics.json"
    jp.write_text(json.dumps(_clean(doc), indent=1) + "\n")
    mp = out / "metrics.md"
    mp.write_text(markdown(summary, records, meta, folds))
    no_mvo = bool(meta.get("no_mvo_class"))
    _write_csv(out / "per_case.csv", records, no_mvo)
    if records:
        agreement.plot(records, out / AGREEMENT_PNG, no_mvo,
                       title=f"{meta.get('format')}: {len(records)} cases, "
                             f"{meta.get('model_name')} {meta.get('model_version')}")
    return jp, mp


def _clean(o: object) -> object:
    if isinstance(o, dict):
        return {k: _clean(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_clean(v) for v in o]
    if isinstance(o, (float, np.floating)):
        return None if not math.isfinite(float(o)) else float(o)
    if isinstance(o, np.integer):
        return int(o)
    return o


def _write_csv(path: Path, records: list[dict[str, object]], no_mvo_class: bool = False) -> None:
    import csv

    with path.open("w", newline="") as f:
        w = csv.writer(f)
        keys = list(VOLUME_STRUCTURES)
        w.writerow(["case", "n_slices", *[f"dice_{k}" for k in M.STRUCTURES], "hd95_myocardium",
                    *[f"vol_gt_{k}" for k in keys], *[f"vol_pred_{k}" for k in keys],
                    "infarct_pct_gt", "infarct_pct_pred", "mvo_pct_gt", "mvo_pct_pred",
                    "localised_by", "centre_error", "lv_in_roi"])
        for r in records:
            # From the volumes (also for records written before the percentages were stored).
            pct = agreement.case_percentages(r, no_mvo_class)
            w.writerow([r["case"], r["n_slices"], *[_fmt(r["dice"][k], 4) for k in M.STRUCTURES],
                        _fmt(r["hd95_myocardium"], 2),
                        *[_fmt(r["volume_gt"][k], 3) for k in keys],
                        *[_fmt(r["volume_pred"][k], 3) for k in keys],
                        *[_fmt(pct[m][side], 2) for m in agreement.MEASURES
                          for side in ("gt", "pred")],
                        r.get("localised_by", "n/a"), _fmt(r.get("centre_error"), 2),
                        _fmt(r.get("lv_in_roi"), 4)])


def _fmt(v: object, nd: int = 4) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "n/a"
    return f"{float(v):.{nd}f}"  # type: ignore[arg-type]


def markdown(summary: dict[str, object], records: list[dict[str, object]],
             meta: dict[str, object], folds: dict[str, dict[str, object]] | None = None) -> str:
    s = summary
    u = s["units"]  # type: ignore[index]
    lines = [f"# Evaluation: {meta.get('format')} ({s['n_cases']} cases, {s['n_slices']} slices)",
             "",
             f"Weights: `{meta.get('weights')}` ({meta.get('model_name')} "
             f"{meta.get('model_version')}), runtime {meta.get('runtime')}, post-processing "
             f"{'on' if meta.get('postprocess') else 'off'}.",
             ""]
    if meta.get("fold") is not None:
        lines += [f"Cases: validation cases of fold {meta['fold']} of `{meta.get('folds_file')}`.",
                  ""]
    lines += _agreement_markdown(s.get("clinical_agreement"))  # type: ignore[arg-type]
    lines += _quality_markdown(s.get("quality_flag"))  # type: ignore[arg-type]
    lines += ["## (a) Dice per class, pooled over all slices", "",
              "| LV cavity | myocardium (normal) | infarct | no-reflow | mean |",
              "|---|---|---|---|---|"]
    pc = s["pooled_class_dice"]  # type: ignore[index]
    lines.append("| " + " | ".join(_fmt(pc[n]) for n in M.CLASS_NAMES.values())
                 + f" | {_fmt(s['pooled_class_dice_mean'])} |")
    lines += ["", f"Mean over: {', '.join(s['pooled_classes_in_mean'])}."]
    across = s.get("across_folds")
    if across:
        m = across["pooled_class_dice_mean"]  # type: ignore[index]
        lines.append(f"Across folds (each fold pooled separately): {_fmt(m['mean'])} ± "
                     f"{_fmt(m['sd'])} (SD of the fold means).")
    lines.append("")
    if meta.get("no_mvo_class"):
        lines += ["No-reflow is not labelled in this data set: predicted no-reflow is scored as "
                  "infarct in this table.", ""]
    lines += ["## (b) EMIDEC per-case Dice (3-D per case; 1 when absent in both)", "",
              "| structure | mean ± SD, all cases | n | mean ± SD, cases with the structure | n |",
              "|---|---|---|---|---|"]
    for name, v in s["per_case_dice"].items():  # type: ignore[union-attr]
        a, p = v["all_cases"], v["cases_with_structure"]
        lines.append(f"| {name} | {_fmt(a['mean'])} ± {_fmt(a['sd'])} | {a['n']} | "
                     f"{_fmt(p['mean'])} ± {_fmt(p['sd'])} | {p['n']} |")
    h = s["hd95_myocardium"]  # type: ignore[index]
    lines += ["", f"## (c) Myocardium HD95 ({h['unit']})", "",
              f"Mean {_fmt(h['mean'], 2)} ± {_fmt(h['sd'], 2)}, median {_fmt(h['median'], 2)} "
              f"over {h['n']} cases ({h['cases_without_value']} without a value: no slice with "
              "myocardium in both).", "",
              f"## (d) Volume agreement per case ({u['volume']})", "",
              "| structure | bias (pred − GT) | SD | 95 % limits | mean abs. diff. | r |",
              "|---|---|---|---|---|---|"]
    for name, v in s["volume_agreement"].items():  # type: ignore[union-attr]
        if name == "unit":
            continue
        lines.append(f"| {name} | {_fmt(v['bias'], 3)} | {_fmt(v['sd'], 3)} | "
                     f"{_fmt(v['loa_low'], 3)} … {_fmt(v['loa_high'], 3)} | {_fmt(v['mad'], 3)} | "
                     f"{_fmt(v['pearson_r'], 3)} |")
    loc = s.get("localisation") or {}
    if loc.get("n_cases"):
        by = meta.get("localised_by") or {}
        lines += ["", f"## (e) LV localisation ({loc['unit']})", "",
                  f"Centre error (used centre vs ground-truth LV centroid, {loc['n_cases']} cases): "
                  f"median {_fmt(loc['centre_error_median'], 1)}, 90th percentile "
                  f"{_fmt(loc['centre_error_p90'], 1)}, max {_fmt(loc['centre_error_max'], 1)}. "
                  f"Cases whose ROI cut off more than 1 % of the LV: {loc['cases_lv_cut']} "
                  f"(least kept: {100 * loc['lv_in_roi_min']:.1f} %). Localised by: "
                  + (", ".join(f"{k} {v}" for k, v in sorted(by.items())) or "n/a") + "."]
    if folds:
        lines += ["", "## Per fold", "",
                  "| fold | cases | pooled mean (1–4) | infarct (pooled) | no-reflow (pooled) | "
                  "myocardium per-case | infarct per-case | no-reflow per-case | infarct % CCC |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for k, f in folds.items():
            pcd, pcs = f["pooled_class_dice"], f["per_case_dice"]
            # Folds evaluated before the agreement block existed have none: n/a.
            ccc = ((f.get("clinical_agreement") or {}).get("infarct_percent") or {}).get("ccc")
            lines.append(f"| {k} | {f['n_cases']} | {_fmt(f['pooled_class_dice_mean'])} | "
                         f"{_fmt(pcd['infarct'])} | {_fmt(pcd['no_reflow'])} | "
                         + " | ".join(_fmt(pcs[n]['all_cases']['mean']) for n in M.STRUCTURES)
                         + f" | {_fmt(ccc, 3)} |")
    lines += ["", "## Worst cases (lowest mean of the three per-case Dice)", "",
              "| case | myocardium | infarct | no-reflow | HD95 | overlay |", "|---|---|---|---|---|---|"]
    for r in worst_cases(records):
        d = r["dice"]
        lines.append(f"| {r['case']} | {_fmt(d['myocardium'])} | {_fmt(d['infarct'])} | "
                     f"{_fmt(d['no_reflow'])} | {_fmt(r['hd95_myocardium'], 2)} | "
                     f"[png](worst/{r['case']}.png) |")
    lines += ["", "Definitions: pipeline/README.md (Evaluation). Research use only.", ""]
    return "\n".join(lines)


def _agreement_markdown(ca: dict[str, object] | None) -> list[str]:
    """The clinical agreement section: one row per measure, and the figure."""
    if not ca:
        return []
    lines = ["## Clinical agreement: infarct and MVO size as % of the LV myocardium", "",
             "Per case, from volumes: infarct = (3+4) / (2+3+4), MVO = 4 / (2+3+4) of the LV "
             "myocardium; differences are predicted − ground truth, in percentage points. "
             "CCC: Lin's concordance correlation coefficient (95 % CI: z-transform, Lin 1989/2000).",
             "",
             "| measure | n | mean GT | mean pred | CCC (95 % CI) | Pearson r | bias | SD | "
             "95 % limits of agreement |",
             "|---|---|---|---|---|---|---|---|---|"]
    for name, (_, label) in agreement.MEASURES.items():
        v = ca.get(name) or {}
        if not v.get("n"):
            note = v.get("note", "no cases")
            lines.append(f"| {label} | 0 | {note} | | | | | | |")
            continue
        lines.append(f"| {label} | {v['n']} | {_fmt(v['mean_truth'], 2)} | "
                     f"{_fmt(v['mean_pred'], 2)} | {_fmt(v['ccc'], 3)} ({_fmt(v['ccc_ci_low'], 3)}"
                     f" to {_fmt(v['ccc_ci_high'], 3)}) | {_fmt(v['pearson_r'], 3)} | "
                     f"{_fmt(v['bias'], 2)} | {_fmt(v['sd'], 2)} | {_fmt(v['loa_low'], 2)} to "
                     f"{_fmt(v['loa_high'], 2)} |")
    pr = ca.get("infarct_presence") or {}
    if pr.get("n_cases"):
        lines += ["", f"Infarct present or not, per case (any predicted infarct counts): detected in "
                      f"{pr['detected']} of {pr['with_infarct']} cases with infarct (sensitivity "
                      f"{_fmt(pr['sensitivity'], 3)}); reported none in {pr['correctly_none']} of "
                      f"{pr['without_infarct']} cases without (specificity "
                      f"{_fmt(pr['specificity'], 3)})."]
    if ca.get("figure"):
        lines += ["", f"![Clinical agreement: predicted vs ground truth and Bland–Altman]"
                      f"({ca['figure']})", "", f"Figure: [{ca['figure']}]({ca['figure']}) "
                      "(left: predicted vs ground truth with the identity line; right: "
                      "Bland–Altman, bias and 95 % limits)."]
    return lines + [""]


def overlay_case(path: Path, image: np.ndarray, gt: np.ndarray, pred: np.ndarray,
                 title: str) -> Path:
    """One PNG per case: a row per slice, image | ground truth | prediction."""
    from PIL import Image, ImageDraw

    from models.overlay import legend_strip, render_overlay, window

    rows = []
    for k in range(image.shape[0]):
        grey = Image.fromarray(window(image[k], ref=image)).convert("RGB")
        a = render_overlay(image[k], gt[k], legend=False, ref=image)
        b = render_overlay(image[k], pred[k], legend=False, ref=image)
        row = Image.new("RGB", (grey.width * 3 + 8, grey.height), (0, 0, 0))
        for i, im in enumerate((grey, a, b)):
            row.paste(im, (i * (grey.width + 4), 0))
        rows.append(row)
    legend = legend_strip(rows[0].width)
    head = 18
    canvas = Image.new("RGB", (rows[0].width, head + sum(r.height + 4 for r in rows)
                               + legend.height), (0, 0, 0))
    ImageDraw.Draw(canvas).text((4, 3), f"{title}   (image | ground truth | prediction)",
                                fill=(255, 255, 255))
    y = head
    for r in rows:
        canvas.paste(r, (0, y))
        y += r.height + 4
    canvas.paste(legend, (0, y))
    path.parent.mkdir(parents=True, exist_ok=True)
    # Large matrices (MyoPS ~500 px) are shrunk so the file stays small.
    if canvas.width > 1600:
        f = 1600 / canvas.width
        canvas = canvas.resize((1600, int(canvas.height * f)))
    canvas.save(path)
    return path


def _quality_markdown(q: dict[str, object] | None) -> list[str]:
    if not q:
        return []
    rho = q.get("spearman_quality_vs_myocardium_dice")
    n_worst = q.get("n_worst")
    lines = ["## Quality flag (\"needs careful review\")", "",
             f"Poor case: myocardium Dice < {q['poor_if_myocardium_dice_below']}. Flag: quality "
             f"score < threshold. Median quality score {_fmt(q['quality_median'])}; Spearman rank "
             f"correlation of the score with myocardium Dice {_fmt(rho)}. Worst cases: the "
             f"{n_worst} with the lowest myocardium Dice (≤ {_fmt(q.get('worst_myocardium_dice_max'))}).",
             "",
             ("| threshold | cases | poor | poor flagged | sensitivity | false alarms | flagged "
              f"| worst {n_worst} flagged |"),
             "|---|---|---|---|---|---|---|---|"]
    rule = q.get("best_threshold_rule")
    best_label = "chosen here (Youden)" if rule == "youden" else f"chosen here ({rule})"
    for label, key in (("model's", "at_model_threshold"), (best_label, "at_best_threshold")):
        st = q.get(key)
        if st:
            lines.append(f"| {label} {_fmt(st['threshold'])} | {st['n_cases']} | {st['n_poor']} | "
                         f"{st['poor_flagged']} | {_fmt(st['sensitivity'])} | "
                         f"{st['false_alarms']} | {st['flagged']} | {st.get('worst_flagged', '')} |")
    return lines + [""]
