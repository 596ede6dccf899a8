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


def test_without_poor_cases_the_lowest_scores_are_flagged_and_worst_cases_counted():
    # 20 good cases; the score tracks Dice, so the lowest score belongs to the worst case
    recs = [_rec(0.80 + 0.005 * i, 0.65 + 0.01 * i) for i in range(20)]
    t, rule = quality.choose_rule(recs)
    assert "lowest 5 %" in rule and "no case" in rule
    s = quality.summarise(recs, threshold=None)
    best = s["at_best_threshold"]
    assert best["flagged"] == 1 and best["n_poor"] == 0 and best["false_alarms"] == 1
    assert s["n_worst"] == 2 and best["worst_flagged"] == 1
    assert s["spearman_quality_vs_myocardium_dice"] == pytest.approx(1.0)
    assert s["best_threshold"] == pytest.approx(t)


def test_score_unrelated_to_quality_shows_in_the_rank_correlation():
    recs = [_rec(0.9 - 0.01 * i, 0.6 + 0.01 * i) for i in range(10)]
    assert quality.summarise(recs, 0.85)["spearman_quality_vs_myocardium_dice"] == pytest.approx(-1.0)
