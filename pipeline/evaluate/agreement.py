"""Clinical agreement: infarct and MVO size as % of the LV myocardium, predicted vs ground truth.

Per case (EMIDEC convention, as ``models.measurements`` reports it to the user):
  infarct % = (3 + 4) / (2 + 3 + 4) x 100,   MVO % = 4 / (2 + 3 + 4) x 100,
from the case's volumes (mL for MyoPS, pixels for EMIDEC PNGs: the ratios are unit-free). A case
whose LV myocardium is empty gets 0 %, as the node reports it. MVO % is only scored where the
ground truth has an MVO class (not MyoPS, whose MVO lies inside scar).

Over cases: Lin's concordance correlation coefficient (CCC) with a 95 % confidence interval,
Pearson r, bias (mean of pred - truth), SD of the differences, Bland-Altman 95 % limits of
agreement (bias +/- 1.96 SD) and n, plus a figure: pred vs truth with the identity line, and the
Bland-Altman plot.

CCC (Lin 1989, Biometrics 45:255): 2 s_xy / (s_x^2 + s_y^2 + (mean_x - mean_y)^2), moments with
divisor n. Its CI uses Lin's asymptotic variance of z = atanh(CCC) (Lin 1989, with the
correction of Lin 2000, Biometrics 56:324-325), the interval taken on z and transformed back:
  var(z) = [ (1-r^2) c^2 / ((1-c^2) r^2) + 2 c^3 (1-c) u^2 / (r (1-c^2)^2)
             - c^4 u^4 / (2 r^2 (1-c^2)^2) ] / (n - 2),   u = (mean_x - mean_y) / sqrt(s_x s_y).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from pipeline.evaluate import metrics as M

# name -> (numerator volume key, label of the measure); the denominator is the myocardium.
MEASURES: dict[str, tuple[str, str]] = {
    "infarct_percent": ("infarct", "infarct % of LV myocardium"),
    "mvo_percent": ("no_reflow", "MVO % of LV myocardium"),
}


def percent_of_myocardium(volumes: dict[str, float], structure: str) -> float:
    """100 x volume of ``structure`` / myocardium volume (2+3+4); 0 when there is no myocardium."""
    myo = float(volumes["myocardium"])
    return 100.0 * float(volumes[structure]) / myo if myo > 0 else 0.0


def case_percentages(rec: dict[str, object], no_mvo_class: bool = False
                     ) -> dict[str, dict[str, float | None]]:
    """{"infarct_percent": {"gt": .., "pred": ..}, "mvo_percent": ...} of one per-case record
    (from its ``volume_gt`` / ``volume_pred``); MVO None where the ground truth has no MVO class."""
    out: dict[str, dict[str, float | None]] = {}
    for name, (structure, _) in MEASURES.items():
        if no_mvo_class and name == "mvo_percent":
            out[name] = {"gt": None, "pred": None}
            continue
        out[name] = {side: percent_of_myocardium(rec[f"volume_{side}"], structure)  # type: ignore
                     for side in ("gt", "pred")}
    return out


def lin_ccc(pred: Sequence[float], truth: Sequence[float]) -> float:
    """Lin's concordance correlation coefficient; NaN for fewer than 2 pairs or no variance."""
    x, y = np.asarray(truth, float), np.asarray(pred, float)
    if x.shape != y.shape:
        raise ValueError(f"shape mismatch {x.shape} vs {y.shape}")
    if x.size < 2:
        return float("nan")
    sxy = float(np.mean((x - x.mean()) * (y - y.mean())))
    denom = float(x.var() + y.var() + (x.mean() - y.mean()) ** 2)
    return 2.0 * sxy / denom if denom > 0 else float("nan")


def ccc_ci(pred: Sequence[float], truth: Sequence[float], level: float = 0.95
           ) -> tuple[float, float]:
    """Confidence interval of Lin's CCC (z-transform, Lin's asymptotic variance; module doc).

    (CCC, CCC) when the agreement is perfect; NaNs when undefined (n < 4, a constant series,
    Pearson r of 0)."""
    from scipy import stats

    x, y = np.asarray(truth, float), np.asarray(pred, float)
    c = lin_ccc(pred, truth)
    n = x.size
    nan = (float("nan"), float("nan"))
    if math.isnan(c) or n < 4:
        return nan
    if abs(c) >= 1.0 - 1e-12:
        return (c, c)
    sx, sy = float(x.std()), float(y.std())
    if sx == 0 or sy == 0:
        return nan
    r = float(np.corrcoef(x, y)[0, 1])
    if r == 0 or not math.isfinite(r):
        return nan
    u = (float(x.mean()) - float(y.mean())) / math.sqrt(sx * sy)
    one = 1.0 - c * c
    var_z = ((1 - r * r) * c * c / (one * r * r)
             + 2 * c ** 3 * (1 - c) * u * u / (r * one * one)
             - c ** 4 * u ** 4 / (2 * r * r * one * one)) / (n - 2)
    if not var_z > 0:
        return nan
    q = float(stats.norm.ppf(0.5 + level / 2))
    z = math.atanh(c)
    half = q * math.sqrt(var_z)
    return (math.tanh(z - half), math.tanh(z + half))


def agreement_stats(pred: Sequence[float], truth: Sequence[float]) -> dict[str, float | int]:
    """n, CCC with its 95 % CI, Pearson r, bias (pred - truth), SD, 95 % limits, mean abs. diff.,
    and the means of both series. NaN where undefined (JSON writers turn it into null)."""
    base = M.agreement(pred, truth)  # bias, SD (n - 1), limits bias +/- 1.96 SD, MAD, r
    lo, hi = ccc_ci(pred, truth)
    p, t = np.asarray(pred, float), np.asarray(truth, float)
    nan = float("nan")
    return {"n": base["n"], "ccc": lin_ccc(pred, truth), "ccc_ci_low": lo, "ccc_ci_high": hi,
            "pearson_r": base["pearson_r"], "bias": base["bias"], "sd": base["sd"],
            "loa_low": base["loa_low"], "loa_high": base["loa_high"], "mad": base["mad"],
            "mean_truth": float(t.mean()) if t.size else nan,
            "mean_pred": float(p.mean()) if p.size else nan}


def summarise(records: list[dict[str, object]], no_mvo_class: bool = False,
              figure: str | None = None) -> dict[str, object]:
    """The ``clinical_agreement`` block of ``metrics.json``: statistics per measure."""
    out: dict[str, object] = {"unit": "% of LV myocardium",
                              "definition": "infarct = labels 3+4, MVO = 4, LV myocardium = 2+3+4; "
                                            "per-case volumes, pred - truth",
                              "figure": figure}
    for name in MEASURES:
        if no_mvo_class and name == "mvo_percent":
            out[name] = {"n": 0, "note": "not labelled in this data set (MVO is inside scar)"}
            continue
        pcts = [case_percentages(r)[name] for r in records]
        out[name] = agreement_stats([float(p["pred"]) for p in pcts],  # type: ignore[arg-type]
                                    [float(p["gt"]) for p in pcts])  # type: ignore[arg-type]
    return out


def plot(records: list[dict[str, object]], path: Path, no_mvo_class: bool = False,
         title: str = "") -> Path:
    """One row per measure: pred vs truth with the identity line | Bland-Altman (difference vs
    mean, bias and 95 % limits)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [n for n in MEASURES if not (no_mvo_class and n == "mvo_percent")]
    fig, axes = plt.subplots(len(names), 2, figsize=(10, 4.4 * len(names)), squeeze=False)
    for row, name in zip(axes, names):
        pcts = [case_percentages(r)[name] for r in records]
        t = np.array([p["gt"] for p in pcts], float)
        p = np.array([p["pred"] for p in pcts], float)
        s = agreement_stats(p, t)
        label = MEASURES[name][1]
        ax = row[0]
        hi = max(float(np.max(t, initial=0.0)), float(np.max(p, initial=0.0)), 1.0) * 1.08
        ax.plot([0, hi], [0, hi], color="0.5", lw=1, ls="--", label="identity")
        ax.scatter(t, p, s=22, alpha=0.75, edgecolor="k", linewidth=0.4)
        ax.set_xlim(-0.03 * hi, hi)  # cases at 0 % stay visible
        ax.set_ylim(-0.03 * hi, hi)
        ax.set_aspect("equal")
        ax.set_xlabel(f"ground truth: {label}")
        ax.set_ylabel(f"predicted: {label}")
        ax.set_title(f"CCC {_num(s['ccc'], 3)} (95 % CI {_num(s['ccc_ci_low'], 2)} to "
                     f"{_num(s['ccc_ci_high'], 2)}), r {_num(s['pearson_r'], 3)}, n {s['n']}",
                     fontsize=10)
        ax.legend(loc="upper left", fontsize=8)
        ax = row[1]
        ax.scatter((t + p) / 2, p - t, s=22, alpha=0.75, edgecolor="k", linewidth=0.4)
        for v, ls, txt in ((s["bias"], "-", "bias"), (s["loa_low"], "--", "−1.96 SD"),
                           (s["loa_high"], "--", "+1.96 SD")):
            if math.isfinite(v):
                ax.axhline(v, color="C3", lw=1, ls=ls)
                ax.annotate(f"{txt} {v:+.1f}", xy=(1.0, v), xycoords=("axes fraction", "data"),
                            xytext=(-4, 3), textcoords="offset points", ha="right",
                            fontsize=8, color="C3")
        ax.axhline(0, color="0.5", lw=0.8, ls=":")
        ax.set_xlabel(f"mean of predicted and ground truth ({label.split(' of ')[0]})")
        ax.set_ylabel("predicted − ground truth (percentage points)")
        ax.set_title(f"Bland–Altman: bias {_num(s['bias'], 1)} ± {_num(s['sd'], 1)} (SD), "
                     f"limits {_num(s['loa_low'], 1)} to {_num(s['loa_high'], 1)}", fontsize=10)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _num(v: float | int | None, nd: int) -> str:
    return "n/a" if v is None or not math.isfinite(float(v)) else f"{float(v):.{nd}f}"
