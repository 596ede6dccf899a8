"""Mask simulator: determinism, label invariants, transmurality, territories, kNN donors, fusion."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from scipy import ndimage

from pipeline.synth import shapes as S
from pipeline.synth import simulate as M


def sim_for(bank, **changes) -> M.Simulator:
    cfg = M.load_config()  # the shipped YAML must load
    for k, v in changes.items():
        section, _, key = k.partition("__")
        if key:
            setattr(getattr(cfg, section), key, v)
        else:
            setattr(cfg, section, v)
    return M.Simulator(cfg, bank)


def assert_invariants(mask: np.ndarray, wall: np.ndarray | None = None) -> None:
    assert mask.shape == (S.ROI, S.ROI) and mask.dtype == np.uint8
    assert set(np.unique(mask).tolist()) <= {0, 1, 2, 3, 4}
    border = np.concatenate([mask[0], mask[-1], mask[:, 0], mask[:, -1]])
    assert not border.any(), "LV must lie inside the ROI"
    cav = mask == 1
    assert not (ndimage.binary_dilation(cav) & (mask == 0)).any(), "cavity must be enclosed by the wall"
    lab, n = ndimage.label(mask == 4, structure=np.ones((3, 3)))
    for k in range(1, n + 1):  # every MVO core lies in an infarct: touches label 3
        assert (ndimage.binary_dilation(lab == k, structure=np.ones((3, 3))) & (mask == 3)).any()
    if wall is not None:  # lesions only inside the given myocardium, which is unchanged
        assert np.array_equal(mask >= 2, wall >= 2)
        assert np.array_equal(mask == 1, wall == 1)


def test_config_documents_every_key():
    text = M.DEFAULT_CONFIG.read_text()
    cfg = M.SimConfig()
    for section in ("shape", "infarct", "mvo", "fusion"):
        for f in dataclasses.fields(getattr(cfg, section)):
            assert f"  {f.name}:" in text, f"{section}.{f.name} missing from simulate.yaml"
    from pipeline.synth.physics import RenderConfig
    for f in dataclasses.fields(RenderConfig):
        assert f"  {f.name}:" in text


def test_unknown_config_key_is_an_error(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("infarct:\n  probabilty: 0.5\n")
    with pytest.raises(ValueError, match="probabilty"):
        M.load_config(p)


@pytest.mark.parametrize("strategy", M.STRATEGIES)
def test_deterministic_with_seed(bank, strategy):
    a = [s.mask for s in M.simulate(sim_for(bank, seed=3), strategy, 6)]
    b = [s.mask for s in M.simulate(sim_for(bank, seed=3), strategy, 6)]
    c = [s.mask for s in M.simulate(sim_for(bank, seed=4), strategy, 6)]
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not all(np.array_equal(x, y) for x, y in zip(a, c))
    # sample i does not depend on how many are drawn
    assert np.array_equal(sim_for(bank, seed=3).sample(strategy, 5).mask, a[5])


@pytest.mark.parametrize("strategy", M.STRATEGIES)
def test_label_invariants(bank, strategy):
    sim = sim_for(bank)
    samples = M.simulate(sim, strategy, 25)
    for s in samples:
        wall = bank.masks[s.meta["recipient"]] if strategy != "synthetic" else None
        assert_invariants(s.mask, wall)
    masks = np.stack([s.mask for s in samples])
    assert (masks == 1).any() and (masks >= 3).any()
    if strategy != "fusion":
        assert (masks == 4).any(), "MVO should appear in 25 samples at the default probability"


def test_transmurality_within_bounds(ring):
    icfg = M.InfarctConfig(transmurality=(0.3, 0.6), boundary_noise=0.3, extra_lesion_probability=0.0)
    mcfg = M.MvoConfig(probability=0.0)
    m = ring(16.0, 26.0)
    idx, _, depth = S.wall_coordinates(m)
    for i in range(30):
        out, les = M.add_lesion(m, np.random.default_rng(i), "mid", icfg, mcfg)
        assert 0.3 <= les.transmurality <= 0.6
        inf = out[idx[0], idx[1]] == 3
        assert inf.any()
        assert depth[inf].max() <= les.transmurality + 1e-9
        assert depth[inf].min() < 0.1, "the infarct starts at the subendocardium"


@pytest.mark.parametrize("level", S.LEVELS)
@pytest.mark.parametrize("territory", sorted(S.TERRITORY_SEGMENTS))
def test_territory_placement_lands_in_aha_sectors(ring, level, territory):
    icfg = M.InfarctConfig(spill_deg=0.0, width_deg=(40.0, 400.0), extra_lesion_probability=0.3)
    mcfg = M.MvoConfig(probability=1.0, min_transmurality=0.0)
    m = ring(14.0, 22.0, aspect=1.2)
    idx, ang, _ = S.wall_coordinates(m)
    for i in range(10):
        out, les = M.add_lesion(m, np.random.default_rng(i), level, icfg, mcfg, territory=territory)
        assert les.territory == territory
        inf = out[idx[0], idx[1]] >= 3
        segs = set(S.aha_segment(ang[inf], level).tolist())
        assert segs and segs <= S.TERRITORY_SEGMENTS[territory]


def test_mvo_is_a_subendocardial_core(ring):
    icfg = M.InfarctConfig(transmurality=(0.8, 1.0), extra_lesion_probability=0.0)
    mcfg = M.MvoConfig(probability=1.0)
    m = ring(16.0, 26.0)
    idx, _, depth = S.wall_coordinates(m)
    out, les = M.add_lesion(m, np.random.default_rng(1), "mid", icfg, mcfg)
    lab = out[idx[0], idx[1]]
    assert les.mvo and (lab == 4).any()
    assert depth[lab == 4].mean() < depth[lab == 3].mean()


def test_nearest_donors_orders_by_scaled_distance():
    rng = np.random.default_rng(0)
    donors = rng.normal(size=(50, 5)) * np.array([1, 10, 10, 2, 0.1])
    q = rng.normal(size=5)
    scale = donors.std(axis=0)
    idx = M.nearest_donors(q, donors, 4, scale)
    d = np.sqrt((((donors - q) / scale) ** 2).sum(axis=1))
    assert idx[0] == int(np.argmin(d))
    assert np.all(np.diff(d[idx]) >= 0)
    # weights change the metric: only the first descriptor counts
    w = np.array([1.0, 0, 0, 0, 0])
    assert M.nearest_donors(q, donors, 1, scale, w)[0] == int(np.argmin(np.abs(donors[:, 0] - q[0])))


def test_fusion_with_k1_uses_the_nearest_donor(bank):
    sim = sim_for(bank, fusion__k=1)
    desc = sim.descriptors
    scale = desc.std(axis=0) + 1e-6
    w = np.array([sim.cfg.fusion.descriptor_weights[n] for n in M.DESCRIPTORS])
    for i in range(8):
        s = sim.sample("fusion", i)
        j, donor = s.meta["recipient"], s.meta["donor"]
        pool = [p for p in sim.donor_pool() if bank.case_ids[p] != bank.case_ids[j]]
        d = [np.sqrt((((desc[p] - desc[j]) / scale) ** 2 * w).sum()) for p in pool]
        assert donor == pool[int(np.argmin(d))]
        assert bank.case_ids[donor] != bank.case_ids[j]


def test_transfer_keeps_the_donor_angles(ring):
    donor = ring(14.0, 22.0)
    idx, ang, depth = S.wall_coordinates(donor)
    sector = (ang > 60) & (ang < 150)
    donor[idx[0][sector], idx[1][sector]] = 3
    recipient = ring(18.0, 27.0, centre=(66.0, 60.0), aspect=1.15)
    out = M.transfer_lesion(recipient, donor)
    assert_invariants(out, recipient)
    ridx, rang, _ = S.wall_coordinates(out)
    lab = out[ridx[0], ridx[1]]
    assert (lab == 3).any()
    assert rang[lab == 3].min() > 50 and rang[lab == 3].max() < 160


def test_synthetic_shapes_pass_the_solidity_filter(bank):
    sim = sim_for(bank, shape__min_solidity=0.95)
    sol = [S.lv_solidity(s.mask) for s in M.simulate(sim, "synthetic", 15)]
    assert np.mean(np.asarray(sol) >= 0.95) > 0.9


def test_unknown_render_key_is_an_error(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("render:\n  snr: [1, 2]\n")
    with pytest.raises(ValueError, match="snr"):
        M.load_config(p)
