"""Infarct present or not, per case, and the minimum reportable infarct chosen on CV records.

A cardiologist reads "no scar" and "scar 0.7 % of the LV" differently, and the network leaves a few
enhanced pixels on most normal hearts. ``models.postprocess.drop_small_infarct`` reports a stack
whose infarct (3+4) is below ``min_infarct_percent`` of the LV wall as having none. The threshold
is chosen here, on cross-validation records (every case scored by a model that did not train on
it), the way nnU-Net decides its post-processing on CV results:

* a case is *positive* when its ground truth holds infarct; it is *detected* at threshold ``t``
  when its predicted infarct % is at least ``t`` (and above 0);
* ``t`` runs over a grid from 0 to ``MAX_PERCENT``; among the thresholds that miss no infarct the
  model found at 0 (hiding a real scar costs more than reporting a speck on a normal heart), the
  one that reports "none" on the most hearts without infarct wins, the smallest on ties, so the
  threshold sits just above the normal hearts' specks rather than just below the smallest real
  infarct. Without negative cases (MyoPS: every case has scar) there is nothing to learn and the
  rule is off (0).

``presence`` is the same count at one threshold; the evaluation report carries it at 0 (the
predictions as they came out of the model, rule included if the model has one).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

MAX_PERCENT = 5.0  # never hide more than this: EMIDEC's and MyoPS' smallest infarcts are 3-4 %
STEP = 0.25


def _pairs(records: Sequence[dict[str, object]]) -> tuple[np.ndarray, np.ndarray]:
    """(ground-truth, predicted) infarct % of the LV myocardium per record that has them."""
    rows = []
    for r in records:
        pct = (r.get("percent") or {}).get("infarct_percent")  # type: ignore[union-attr]
        if pct and pct.get("gt") is not None and pct.get("pred") is not None:
            rows.append((float(pct["gt"]), float(pct["pred"])))
    if not rows:
        return np.zeros(0), np.zeros(0)
    gt, pred = np.array(rows).T
    return gt, pred


def presence(records: Sequence[dict[str, object]], threshold: float = 0.0) -> dict[str, object]:
    """Infarct detection per case at ``threshold`` (% of the LV wall): counts, sensitivity, specificity."""
    gt, pred = _pairs(records)
    return _presence(gt, pred, threshold)


def _presence(gt: np.ndarray, pred: np.ndarray, t: float) -> dict[str, object]:
    pos, said = gt > 0, (pred > 0) & (pred >= t)
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    tp, tn = int((pos & said).sum()), int((~pos & ~said).sum())
    sens = tp / n_pos if n_pos else None
    spec = tn / n_neg if n_neg else None
    return {"threshold": t, "n_cases": int(gt.size), "with_infarct": n_pos, "without_infarct": n_neg,
            "detected": tp, "missed": n_pos - tp, "correctly_none": tn, "false_infarct": n_neg - tn,
            "sensitivity": sens, "specificity": spec}


def choose(records: Sequence[dict[str, object]]) -> tuple[float, dict[str, object]]:
    """The minimum reportable infarct % for ``records`` and what it does on them (at 0 and at it)."""
    gt, pred = _pairs(records)
    before = _presence(gt, pred, 0.0)
    if not before["with_infarct"] or not before["without_infarct"]:
        return 0.0, {"rule": "off: the records need cases with and without infarct",
                     "before": before, "after": before}
    best_t, best = 0.0, int(before["correctly_none"])  # type: ignore[arg-type]
    for t in np.arange(STEP, MAX_PERCENT + STEP / 2, STEP):
        p = _presence(gt, pred, float(t))
        if p["detected"] < before["detected"]:  # type: ignore[operator]
            break  # larger thresholds would hide even more infarcts
        if int(p["correctly_none"]) > best:  # type: ignore[arg-type]
            best_t, best = round(float(t), 2), int(p["correctly_none"])  # type: ignore[arg-type]
    return best_t, {"rule": f"most hearts without infarct reported as none, no infarct found at 0 "
                            f"lost, smallest on ties; grid 0-{MAX_PERCENT:g} % step {STEP:g}; "
                            f"{gt.size} CV cases",
                    "before": before, "after": _presence(gt, pred, best_t)}
