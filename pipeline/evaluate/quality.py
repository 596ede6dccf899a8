"""How well the per-series quality score (``models.segment.Quality``) picks out poor results.

A case is *poor* when its myocardium Dice (labels 2+3+4, per case) is below ``POOR_DICE``; the
flag is ``quality < threshold``. ``choose_threshold`` picks, over the observed scores, the
threshold that maximises Youden's J (sensitivity + specificity - 1) for finding poor cases; on
cross-validation records that is the threshold to ship in ``model.json``
(``quality_threshold``). ``summarise`` reports, at a given threshold, the share of poor cases
flagged (sensitivity), the false alarms (good cases flagged) and the flag rate.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

POOR_DICE = 0.6
STRUCTURE = "myocardium"  # per-case Dice key of labels 2+3+4 in the evaluation records


def _arrays(records: Sequence[dict[str, object]], poor_dice: float
            ) -> tuple[np.ndarray, np.ndarray]:
    rows = [(float(r["quality"]), float(r["dice"][STRUCTURE]))  # type: ignore[index]
            for r in records if r.get("quality") is not None]
    if not rows:
        return np.zeros(0), np.zeros(0, bool)
    q, d = np.array(rows).T
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
    q, poor = _arrays(records, poor_dice)
    if q.size == 0:
        return None
    best = choose_threshold(records, poor_dice)
    return {
        "poor_if_myocardium_dice_below": poor_dice,
        "quality_median": float(np.median(q)),
        "at_model_threshold": flag_stats(q, poor, threshold) if threshold is not None else None,
        "best_threshold": best,
        "at_best_threshold": flag_stats(q, poor, best) if best is not None else None,
    }
