"""The simulator on the real EMIDEC development masks (skipped without the shared data)."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.synth import realism as R
from pipeline.synth import shapes as S
from pipeline.synth import simulate as M


@pytest.fixture(scope="module")
def real_bank(emidec_root):
    return S.load_real_bank(str(emidec_root))


def test_bank_follows_the_roi_convention(real_bank):
    assert real_bank.masks.shape[1:] == (128, 128) and len(real_bank) > 500
    # ROI centred on each case's LV centroid: per-slice centroids stay near the ROI centre
    assert np.abs(real_bank.offsets).max() < 20
    assert set(real_bank.levels) == set(S.LEVELS)


@pytest.mark.parametrize("strategy", M.STRATEGIES)
def test_real_simulation_invariants_and_realism(real_bank, strategy):
    sim = M.Simulator(M.load_config(), real_bank)
    samples = M.simulate(sim, strategy, 40)
    masks = np.stack([s.mask for s in samples])
    for s in samples:
        m = s.mask
        border = np.concatenate([m[0], m[-1], m[:, 0], m[:, -1]])
        assert not border.any()
        if strategy != "synthetic":
            wall = real_bank.masks[s.meta["recipient"]]
            assert np.array_equal(m >= 2, wall >= 2) and np.array_equal(m == 1, wall == 1)
    t = R.compare(real_bank.masks, masks)
    # loose sanity bounds (the report gives the exact distances): wall thickness within 2 mm,
    # infarct % of myocardium within 15 points (Wasserstein-1)
    assert t["wall_thickness_mm"]["wasserstein"] < 2.0
    assert t["infarct_pct_myo"]["wasserstein"] < 15.0
