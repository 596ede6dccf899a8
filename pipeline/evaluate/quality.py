"""How well the per-series quality score (``models.segment.Quality``) picks out poor results.

A case is *poor* when its myocardium Dice (labels 2+3+4, per case) is below ``POOR_DICE``; the
flag is ``quality < threshold``. ``choose_threshold`` picks, over the observed scores, the
threshold that maximises Youden's J (sensitivity + specificity - 1) for finding poor cases; on
cross-validation records that is the threshold to ship in ``model.json``
(``quality_threshold``). When the records hold no poor case (a good model on clean data) Youden
is undefined, and a flag that never fires would protect nobody on the first unusual series: the
threshold then flags the lowest ``FALLBACK_RATE`` of the observed scores, an out-of-distribution
rule stated as such in the report. ``summarise`` reports, at a given threshold, the share of poor
cases flagged (sensitivity), the false alarms (good cases flagged), the flag rate, how many of
the worst tenth of cases (lowest myocardium Dice) are flagged, and the rank correlation between
score and Dice, which says whether the score tracks quality at all.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

POOR_DICE = 0.6
FALLBACK_RATE = 0.05  # share of cases flagged when no poor case exists to choose a threshold on
WORST_SHARE = 0.10  # "worst cases": this share of the records, by myocardium Dice
STRUCTURE = "myocardium"  # per-case Dice key of labels 2+3+4 in the evaluation records


def _scores(records: Sequence[dict[str, object]]) -> tuple[np.ndarray, np.ndarray]:
    rows = [(float(r["quality"]), float(r["dice"][STRUCTURE]))  # type: ignore[index]
            for r in records if r.get("quality") is not None]
    if not rows:
        return np.zeros(0), np.zeros(0)
    q, d = np.array(rows).T
    return q, d


def _arrays(records: Sequence[dict[str, object]], poor_dice: float
            ) -> tuple[np.ndarray, np.ndarray]:
    q, d = _scores(records)
    return q, d < poor_dice


def flag_stats(quality: np.ndarray, poor: np.ndarray, threshold: float) -> dict[str, object]:
    flagged = quality < threshold
    n_poor, n_good = int(poor.sum()), int((~poor).sum())
    return {
        "threshold": float(threshold),
        "n_cases": int(poor.size),
        "n_poor": n_poor,
        "flagged": int(flagged.sum()),
        "poor_flagged": int((flagged & poor).sum()),
        "sensitivity": float((flagged & poor).sum() / n_poor) if n_poor else None,
        "false_alarms": int((flagged & ~poor).sum()),
        "false_alarm_rate": float((flagged & ~poor).sum() / n_good) if n_good else None,
    }


def choose_threshold(records: Sequence[dict[str, object]], poor_dice: float = POOR_DICE
                     ) -> float | None:
    """Youden-optimal threshold over the observed quality scores (ties: the lower threshold,
    fewer false alarms); None without both poor and good cases."""
    q, poor = _arrays(records, poor_dice)
    if not poor.any() or poor.all():
        return None
    return _youden(q, poor)


def choose_rule(records: Sequence[dict[str, object]], poor_dice: float = POOR_DICE,
                fallback_rate: float = FALLBACK_RATE) -> tuple[float | None, str | None]:
    """The threshold to ship and the rule that chose it: Youden when there are poor and good
    cases; otherwise the ``fallback_rate`` quantile of the scores (just above it, so that share
    is flagged); (None, None) without scores."""
    q, poor = _arrays(records, poor_dice)
    return _rule(q, poor, poor_dice, fallback_rate)


def _rule(q: np.ndarray, poor: np.ndarray, poor_dice: float, fallback_rate: float = FALLBACK_RATE
          ) -> tuple[float | None, str | None]:
    if q.size == 0:
        return None, None
    if poor.any() and not poor.all():
        return _youden(q, poor), "youden"
    # Lowest ceil(rate * n) scores flagged (at least one); the midpoint keeps ties honest.
    k = max(1, int(np.ceil(fallback_rate * q.size)))
    srt = np.sort(q)
    t = float(srt[k - 1] + (srt[k] - srt[k - 1]) / 2) if k < q.size else float(srt[-1] + 1e-6)
    why = "every case" if poor.all() else "no case"
    return t, f"lowest {100 * fallback_rate:g} % of scores ({why} with myocardium Dice < {poor_dice})"


def _youden(q: np.ndarray, poor: np.ndarray) -> float | None:
    candidates = np.unique(np.concatenate([q, q + 1e-6]))
    best, best_j = None, -np.inf
    for t in candidates:
        s = flag_stats(q, poor, float(t))
        j = (s["sensitivity"] or 0.0) - (s["false_alarm_rate"] or 0.0)  # type: ignore[operator]
        if j > best_j + 1e-12:
            best, best_j = float(t), j
    return best


def summarise(records: Sequence[dict[str, object]], threshold: float | None,
              poor_dice: float = POOR_DICE) -> dict[str, object] | None:
    """Flag performance at ``threshold`` (the model's) and at the Youden-optimal one on these
    records; None when the records carry no quality score."""
    q, d = _scores(records)
    if q.size == 0:
        return None
    poor = d < poor_dice
    best, rule = _rule(q, poor, poor_dice)
    # Worst cases by rank, so the flag is judged even where no case is "poor" by the fixed cut.
    n_worst = max(1, int(round(WORST_SHARE * q.size)))
    worst = np.zeros(q.size, bool)
    worst[np.argsort(d, kind="stable")[:n_worst]] = True

    def at(t: float) -> dict[str, object]:
        return {**flag_stats(q, poor, t), "worst_flagged": int(((q < t) & worst).sum())}

    rho = None
    if q.size >= 3 and np.ptp(q) > 0 and np.ptp(d) > 0:
        from scipy.stats import spearmanr
        rho = float(spearmanr(q, d).statistic)
    return {
        "poor_if_myocardium_dice_below": poor_dice,
        "quality_median": float(np.median(q)),
        "spearman_quality_vs_myocardium_dice": rho,
        "n_worst": n_worst,
        "worst_myocardium_dice_max": float(d[worst].max()),
        "at_model_threshold": at(threshold) if threshold is not None else None,
        "best_threshold": best,
        "best_threshold_rule": rule,
        "at_best_threshold": at(best) if best is not None else None,
    }
