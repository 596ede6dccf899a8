"""Comparison of the experiment's arms: pooled per-class Dice per arm, the difference to the
baseline with a 95 % paired-bootstrap interval over cases, a table and a forest plot."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from pipeline.evaluate.metrics import STRUCTURES
from pipeline.experiment.bootstrap import (
    CLASSES,
    per_case_deltas,
    pooled_class_deltas,
    pooled_dice,
)


def load_records(out: Path, arm: str, folds: list[int]) -> list[dict[str, object]]:
    """Per-case evaluation records of one arm over the folds, sorted by case id."""
    recs: list[dict[str, object]] = []
    for k in folds:
        path = Path(out) / arm / "eval" / f"fold{k}" / "metrics.json"
        if not path.exists():
            raise FileNotFoundError(f"{path}: arm {arm} has no evaluation for fold {k}")
        recs.extend(json.loads(path.read_text())["cases"])
    return sorted(recs, key=lambda r: str(r["case"]))


def compare(out: Path, arms: list[str], baseline: str, folds: list[int], n_boot: int = 2000,
            seed: int = 0) -> dict[str, object]:
    """Write OUT/results.json, results.md and deltas.png; return the results document."""
    out = Path(out)
    records = {a: load_records(out, a, folds) for a in arms}
    base_ids = [r["case"] for r in records[baseline]]
    for a, recs in records.items():
        if [r["case"] for r in recs] != base_ids:
            raise ValueError(f"arm {a} was evaluated on other cases than {baseline}")
    counts = {a: np.array([r["counts"] for r in recs], dtype=np.int64)
              for a, recs in records.items()}
    doc: dict[str, object] = {"baseline": baseline, "folds": folds, "n_cases": len(base_ids),
                              "cases": base_ids, "n_boot": n_boot, "seed": seed, "arms": {}}
    for a in arms:
        d = pooled_dice(counts[a])
        fg = [float(d[c]) for c in CLASSES if math.isfinite(d[c])]
        entry: dict[str, object] = {
            "pooled_dice": {name: _num(d[c]) for c, name in CLASSES.items()},
            "pooled_dice_mean": float(np.mean(fg)) if fg else None,
            "per_case_dice_mean": {s: _mean([r["dice"][s] for r in records[a]])  # type: ignore
                                   for s in STRUCTURES},
            # The challenge scores a case without the structure 1 when nothing is predicted,
            # which rewards never predicting a rare class: also report the cases that have it.
            "per_case_dice_mean_present": {s: _mean(_present(records[a], s)) for s in STRUCTURES},
        }
        if a != baseline:
            deltas = pooled_class_deltas(counts[baseline], counts[a], n_boot, seed)
            entry["delta_pooled"] = {k: v.to_dict() for k, v in deltas.items()}
            entry["delta_per_case"] = {
                s: per_case_deltas([r["dice"][s] for r in records[baseline]],  # type: ignore
                                   [r["dice"][s] for r in records[a]], n_boot, seed).to_dict()
                for s in STRUCTURES}
            entry["delta_per_case_present"] = {
                s: per_case_deltas(_present(records[baseline], s), _present(records[a], s),
                                   n_boot, seed).to_dict()
                for s in STRUCTURES}
        doc["arms"][a] = entry  # type: ignore[index]
    doc = _clean(doc)  # type: ignore[assignment]
    (out / "results.json").write_text(json.dumps(doc, indent=1) + "\n")
    (out / "results.md").write_text(markdown(doc, _budget(out)))
    forest_plot(doc, out / "deltas.png")
    return doc


def _present(records: list[dict[str, object]], structure: str) -> list[float | None]:
    """Per-case Dice, None where the ground truth lacks the structure (same case order)."""
    return [r["dice"][structure] if r["present"][structure] else None  # type: ignore[index]
            for r in records]


def _budget(out: Path) -> dict[str, object] | None:
    p = out / "experiment.json"
    return json.loads(p.read_text()).get("budget") if p.exists() else None


def _num(v: float) -> float | None:
    return float(v) if math.isfinite(v) else None


def _mean(vals: list[float | None]) -> float | None:
    v = [x for x in vals if x is not None]
    return float(np.mean(v)) if v else None


def _clean(o: object) -> object:
    if isinstance(o, dict):
        return {k: _clean(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_clean(v) for v in o]
    if isinstance(o, float) and not math.isfinite(o):
        return None
    return o


def _f(v: object, nd: int = 3) -> str:
    return "n/a" if v is None else f"{float(v):.{nd}f}"  # type: ignore[arg-type]


def _delta(d: dict[str, object] | None) -> str:
    if not d or d.get("delta") is None:
        return "n/a"
    mark = " ▲" if (d.get("ci_lo") or 0) > 0 else (" ▼" if (d.get("ci_hi") or 0) < 0 else "")
    return (f"{100 * float(d['delta']):+.1f} [{100 * float(d['ci_lo']):+.1f}, "  # type: ignore
            f"{100 * float(d['ci_hi']):+.1f}]{mark}")  # type: ignore[arg-type]


def markdown(doc: dict[str, object], budget: dict[str, object] | None) -> str:
    arms: dict[str, dict[str, object]] = doc["arms"]  # type: ignore[assignment]
    base = str(doc["baseline"])
    names = list(CLASSES.values())
    lines = [f"# Synthetic-augmentation experiment ({doc['n_cases']} validation cases, "
             f"folds {', '.join(str(k) for k in doc['folds'])})", ""]
    if budget:
        lines += ["Same network, budget and folds for every arm: "
                  + ", ".join(f"{k} {v}" for k, v in budget.items()) + ".", ""]
    lines += ["## Pooled per-class Dice", "",
              "| arm | " + " | ".join(names) + " | mean |", "|---" * (len(names) + 2) + "|"]
    for a, e in arms.items():
        pd = e["pooled_dice"]  # type: ignore[index]
        lines.append(f"| {a} | " + " | ".join(_f(pd[n]) for n in names)  # type: ignore[index]
                     + f" | {_f(e['pooled_dice_mean'])} |")
    lines += ["", f"## Difference to `{base}` (Dice points, 95 % paired bootstrap CI over cases, "
              f"{doc['n_boot']} resamples; ▲ interval above zero, ▼ below)", "",
              "| arm | " + " | ".join(names) + " | mean |", "|---" * (len(names) + 2) + "|"]
    for a, e in arms.items():
        if a == base:
            continue
        d = e["delta_pooled"]  # type: ignore[index]
        lines.append(f"| {a} | " + " | ".join(_delta(d[n]) for n in names)  # type: ignore
                     + f" | {_delta(d['mean'])} |")  # type: ignore[index]
    for title, key, dkey in (
            ("all cases, the challenge's rule: a case without the structure scores 1 if none "
             "is predicted, else 0", "per_case_dice_mean", "delta_per_case"),
            ("only the cases whose ground truth has the structure", "per_case_dice_mean_present",
             "delta_per_case_present")):
        lines += ["", f"## EMIDEC per-case Dice, {title} (mean; difference to the baseline "
                  "with CI)", "", "| arm | " + " | ".join(STRUCTURES) + " |",
                  "|---" * (len(STRUCTURES) + 1) + "|"]
        for a, e in arms.items():
            pc = e[key]  # type: ignore[index]
            cells = []
            for s in STRUCTURES:
                cell = _f(pc[s])  # type: ignore[index]
                if a != base:
                    cell += f" ({_delta(e[dkey][s])})"  # type: ignore[index]
                cells.append(cell)
            lines.append(f"| {a} | " + " | ".join(cells) + " |")
    lines += ["", "Figure: `deltas.png` (difference to the baseline per class, with intervals).", ""]
    return "\n".join(lines)


def forest_plot(doc: dict[str, object], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    arms = {a: e for a, e in doc["arms"].items() if a != doc["baseline"]}  # type: ignore
    keys = [*CLASSES.values(), "mean"]
    fig, ax = plt.subplots(figsize=(7, 1.0 + 0.45 * len(keys) * max(1, len(arms))))
    y, ticks, labels = 0.0, [], []
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, (a, e) in enumerate(arms.items()):
        for k in keys:
            d = e["delta_pooled"][k]  # type: ignore[index]
            if d.get("delta") is not None and d.get("ci_lo") is not None:
                ax.errorbar(100 * d["delta"], y,
                            xerr=[[100 * (d["delta"] - d["ci_lo"])],
                                  [100 * (d["ci_hi"] - d["delta"])]],
                            fmt="o", color=colours[i % len(colours)], capsize=3)
            ticks.append(y)
            labels.append(f"{a}: {k}")
            y -= 1
        y -= 0.6
    ax.axvline(0, color="k", lw=0.8)
    ax.set_yticks(ticks, labels)
    ax.set_xlabel(f"pooled Dice difference to '{doc['baseline']}' (points, 95 % CI)")
    ax.set_title(f"{doc['n_cases']} cases, paired bootstrap over cases")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
