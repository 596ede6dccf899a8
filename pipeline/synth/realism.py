"""Realism report: lesion and wall statistics of simulated masks vs the real development masks.

Per slice: infarct % of myocardium (labels 3+4 over 2+3+4, slices with infarct), no-reflow % of
infarct (4 over 3+4, slices with MVO), mean wall thickness (mm, slices with a cavity) and lesion
contiguity (number of 8-connected infarct components, slices with infarct) and LV solidity (area
over convex-hull area: how convex the simulated shapes are). Distances: 1-D
Wasserstein (in the statistic's unit) and the two-sample Kolmogorov-Smirnov statistic.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from scipy import ndimage, stats

from pipeline.synth.shapes import lv_solidity, wall_thickness_mm

STATS = {
    "infarct_pct_myo": "infarct % of myocardium",
    "mvo_pct_infarct": "no-reflow % of infarct",
    "wall_thickness_mm": "wall thickness (mm)",
    "lesion_components": "infarct components per slice",
    "lv_solidity": "LV solidity (area / convex hull)",
}


def mask_stats(masks: np.ndarray) -> dict[str, np.ndarray]:
    """The per-slice statistics above (each array holds only the slices where it is defined)."""
    out: dict[str, list[float]] = {k: [] for k in STATS}
    out["has_infarct"] = []
    out["has_mvo"] = []
    eight = np.ones((3, 3), bool)
    for m in np.asarray(masks):
        myo = (m >= 2).sum()
        inf = (m >= 3).sum()
        mvo = (m == 4).sum()
        out["has_infarct"].append(float(inf > 0))
        out["has_mvo"].append(float(mvo > 0))
        if inf and myo:
            out["infarct_pct_myo"].append(100.0 * inf / myo)
            out["lesion_components"].append(float(ndimage.label(m >= 3, structure=eight)[1]))
        if mvo:
            out["mvo_pct_infarct"].append(100.0 * mvo / inf)
        sol = lv_solidity(m)
        if np.isfinite(sol):
            out["lv_solidity"].append(sol)
        t = wall_thickness_mm(m)
        if np.isfinite(t):
            out["wall_thickness_mm"].append(t)
    return {k: np.asarray(v, float) for k, v in out.items()}


def distances(real: np.ndarray, synth: np.ndarray) -> dict[str, float]:
    if real.size == 0 or synth.size == 0:
        return {"wasserstein": float("nan"), "ks": float("nan"), "ks_p": float("nan")}
    ks = stats.ks_2samp(real, synth)
    return {"wasserstein": float(stats.wasserstein_distance(real, synth)),
            "ks": float(ks.statistic), "ks_p": float(ks.pvalue)}


def compare(real_masks: np.ndarray, synth_masks: np.ndarray) -> dict[str, dict[str, float]]:
    r, s = mask_stats(real_masks), mask_stats(synth_masks)
    table: dict[str, dict[str, float]] = {}
    for k in STATS:
        row = distances(r[k], s[k])
        row.update({"real_median": _median(r[k]), "synth_median": _median(s[k]),
                    "n_real": float(r[k].size), "n_synth": float(s[k].size)})
        table[k] = row
    for k in ("has_infarct", "has_mvo"):
        table[k] = {"real_fraction": float(r[k].mean()) if r[k].size else float("nan"),
                    "synth_fraction": float(s[k].mean()) if s[k].size else float("nan")}
    return table


def _median(x: np.ndarray) -> float:
    return float(np.median(x)) if x.size else float("nan")


def write_report(real_masks: np.ndarray, synth_masks: np.ndarray, out_dir: str | Path,
                 title: str = "simulated") -> Path:
    """Writes ``realism.md``, ``realism.json`` and ``realism_hist.png`` in ``out_dir``; returns the .md."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    r, s = mask_stats(real_masks), mask_stats(synth_masks)
    table = compare(real_masks, synth_masks)
    fig, axes = plt.subplots(1, len(STATS), figsize=(3.6 * len(STATS), 3.2))
    for ax, (k, label) in zip(axes, STATS.items()):
        both = np.concatenate([r[k], s[k]])
        bins = np.linspace(both.min(), both.max() + 1e-6, 25) if both.size else 10
        for vals, name in ((r[k], "real"), (s[k], title)):
            if vals.size:  # an empty set has no density (e.g. no MVO at all)
                ax.hist(vals, bins=bins, density=True, alpha=0.55, label=f"{name} (n={vals.size})")
        ax.set_title(label, fontsize=9)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "realism_hist.png", dpi=90)
    plt.close(fig)
    lines = [f"# Realism: {title} vs real development masks", "",
             f"{len(synth_masks)} simulated vs {len(real_masks)} real ROI masks. "
             "W1 = Wasserstein-1 distance (unit of the statistic), KS = two-sample Kolmogorov-Smirnov statistic.",
             "", "| statistic | real median | sim median | W1 | KS | KS p | n real | n sim |",
             "|---|---|---|---|---|---|---|---|"]
    for k, label in STATS.items():
        t = table[k]
        lines.append(f"| {label} | {t['real_median']:.2f} | {t['synth_median']:.2f} | {t['wasserstein']:.2f} "
                     f"| {t['ks']:.3f} | {t['ks_p']:.2g} | {int(t['n_real'])} | {int(t['n_synth'])} |")
    lines += ["", "| fraction of slices | real | sim |", "|---|---|---|"]
    for k in ("has_infarct", "has_mvo"):
        lines.append(f"| {k.replace('has_', 'with ')} | {table[k]['real_fraction']:.3f} "
                     f"| {table[k]['synth_fraction']:.3f} |")
    lines += ["", "![histograms](realism_hist.png)", ""]
    md = out / "realism.md"
    md.write_text("\n".join(lines))
    (out / "realism.json").write_text(json.dumps(table, indent=1))
    return md
