"""Realism statistics and report."""

from __future__ import annotations

import json

import numpy as np

from pipeline.synth import realism as R
from pipeline.synth import shapes as S


def test_mask_stats_on_a_known_mask(ring):
    m = ring(16.0, 26.0)
    idx, ang, _ = S.wall_coordinates(m)
    a = (ang > 0) & (ang < 90)
    b = (ang > 180) & (ang < 200)
    m[idx[0][a | b], idx[1][a | b]] = 3
    core = (ang > 30) & (ang < 60)
    m[idx[0][core], idx[1][core]] = 4
    st = R.mask_stats(m[None])
    myo, inf = (m >= 2).sum(), (m >= 3).sum()
    assert np.isclose(st["infarct_pct_myo"][0], 100 * inf / myo)
    assert np.isclose(st["mvo_pct_infarct"][0], 100 * (m == 4).sum() / inf)
    assert st["lesion_components"][0] == 2
    assert np.isclose(st["wall_thickness_mm"][0], 10 * 1.25, atol=1.5)


def test_distances_zero_for_identical_and_grow_with_shift(bank):
    same = R.compare(bank.masks, bank.masks)
    assert same["wall_thickness_mm"]["wasserstein"] == 0 and same["infarct_pct_myo"]["ks"] == 0
    d = R.distances(np.arange(50.0), np.arange(50.0) + 10)
    assert np.isclose(d["wasserstein"], 10.0) and d["ks"] > 0.15


def test_write_report(tmp_path, bank):
    md = R.write_report(bank.masks, bank.masks[::-1][:20], tmp_path, title="toy")
    text = md.read_text()
    assert "infarct % of myocardium" in text and "Wasserstein" in text
    assert (tmp_path / "realism_hist.png").stat().st_size > 1000
    table = json.loads((tmp_path / "realism.json").read_text())
    assert set(R.STATS) <= set(table)
