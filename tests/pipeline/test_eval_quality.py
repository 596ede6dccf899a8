"""The quality flag's evaluation: threshold choice and sensitivity / false alarms."""

from __future__ import annotations

import pytest

from pipeline.evaluate import quality


def _rec(q: float, myo: float) -> dict[str, object]:
    return {"quality": q, "dice": {"myocardium": myo}}


def test_threshold_separates_poor_from_good():
    recs = [_rec(0.95, 0.8), _rec(0.93, 0.75), _rec(0.90, 0.7), _rec(0.70, 0.4), _rec(0.65, 0.3)]
    t = quality.choose_threshold(recs)
    assert 0.70 < t <= 0.90
    s = quality.summarise(recs, threshold=0.8)
    m = s["at_model_threshold"]
    assert (m["n_poor"], m["poor_flagged"], m["false_alarms"], m["flagged"]) == (2, 2, 0, 2)
    assert m["sensitivity"] == 1.0 and m["false_alarm_rate"] == 0.0
    assert s["at_best_threshold"]["sensitivity"] == 1.0


def test_overlapping_scores_count_false_alarms():
    recs = [_rec(0.9, 0.8), _rec(0.6, 0.8), _rec(0.5, 0.3), _rec(0.95, 0.5)]
    st = quality.summarise(recs, threshold=0.7)["at_model_threshold"]
    assert st["poor_flagged"] == 1 and st["sensitivity"] == pytest.approx(0.5)
    assert st["false_alarms"] == 1 and st["false_alarm_rate"] == pytest.approx(0.5)


def test_no_scores_or_one_group():
    assert quality.summarise([{"dice": {"myocardium": 0.8}}], 0.5) is None
    assert quality.choose_threshold([_rec(0.9, 0.8), _rec(0.8, 0.9)]) is None
