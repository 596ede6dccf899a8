"""Infarct presence per case and the minimum reportable infarct chosen on CV records."""

from __future__ import annotations

import pytest

from pipeline.evaluate import min_infarct


def _rec(gt: float, pred: float) -> dict[str, object]:
    return {"case": f"c{gt}-{pred}", "percent": {"infarct_percent": {"gt": gt, "pred": pred}}}


NORMALS = [_rec(0, p) for p in (0.0, 0.3, 0.6, 1.1, 1.9)]
INFARCTS = [_rec(g, p) for g, p in ((4.0, 2.6), (12.0, 10.0), (25.0, 30.0))]


def test_presence_counts():
    p = min_infarct.presence(NORMALS + INFARCTS)
    assert (p["with_infarct"], p["without_infarct"], p["detected"], p["correctly_none"]) == (3, 5, 3, 1)
    assert p["sensitivity"] == 1.0 and p["specificity"] == pytest.approx(0.2)
    p = min_infarct.presence(NORMALS + INFARCTS, 1.0)
    assert p["correctly_none"] == 3 and p["false_infarct"] == 2


def test_threshold_clears_specks_without_losing_an_infarct():
    t, info = min_infarct.choose(NORMALS + INFARCTS)
    # every normal speck (max 1.9) lies below the smallest predicted infarct (2.6): the smallest
    # grid step above 1.9 clears all normals and keeps every infarct
    assert t == 2.0
    assert info["after"]["correctly_none"] == 5 and info["after"]["missed"] == 0
    assert info["before"]["correctly_none"] == 1


def test_a_real_small_infarct_caps_the_threshold():
    """A normal heart's speck larger than a real infarct's prediction: the infarct wins."""
    recs = NORMALS + INFARCTS + [_rec(0, 3.5), _rec(3.0, 1.3)]
    t, info = min_infarct.choose(recs)
    assert t <= 1.25 and info["after"]["missed"] == 0
    assert info["after"]["correctly_none"] == 4  # 0.0, 0.3, 0.6, 1.1 cleared; 1.9 and 3.5 remain


def test_off_without_normal_hearts():
    t, info = min_infarct.choose(INFARCTS)
    assert t == 0.0 and info["rule"].startswith("off")
    assert min_infarct.choose([])[0] == 0.0
