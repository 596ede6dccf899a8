"""AHA 17-segment analysis on synthetic LV phantoms defined in patient space.

The phantom is a stack of annuli (cavity inside, myocardium around) along a base -> apex axis
``u``; an infarct wedge is the part of the wall whose direction from the axis is within a
half-angle of a *patient-space* vector ``w`` (a dot-product test: no angle convention in the
test). Expected segments come from anatomy by hand: with the apex pointing to the feet
(u = LPS (0, 0, -1)) the anterior wall faces -y, the septum faces the patient's right (-x, the
RV side), the lateral wall +x and the inferior wall +y. The images are then stored with various
in-plane rotations and flips, and the whole heart is tilted, which must not change the answer.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from models.aha import ANTERIOR_LPS, compute_aha
from models.volume import Volume

ANT = np.array([0.0, -1.0, 0.0])
RIGHT = np.array([-1.0, 0.0, 0.0])
LEFT = np.array([1.0, 0.0, 0.0])
POST = np.array([0.0, 1.0, 0.0])
APEX_DOWN = np.array([0.0, 0.0, -1.0])


def _unit(v) -> np.ndarray:
    v = np.asarray(v, dtype=float)
    return v / np.linalg.norm(v)


def _rot_y(deg: float) -> np.ndarray:
    t = np.radians(deg)
    return np.array([[np.cos(t), 0, np.sin(t)], [0, 1, 0], [-np.sin(t), 0, np.cos(t)]])


def phantom(
    u=APEX_DOWN,
    wedges=(),
    *,
    n=6,
    spacing=8.0,
    r_cav=15.0,
    r_epi=25.0,
    cavity_taper=0.0,
    cap=False,
    alpha_deg=0.0,
    flip=False,
    rotation=np.eye(3),
    size=72,
    px=1.0,
) -> tuple[np.ndarray, Volume, np.ndarray]:
    """Labels, Volume and the base -> apex axis. ``wedges``: (w, half_deg, r_outer, label)."""
    u = rotation @ _unit(u)
    # In-plane basis, then the stored row/column directions (rotated by alpha, maybe flipped).
    e1 = _unit(np.cross(u, [0.3, 0.2, 0.9]) if abs(u[2]) < 0.9 else np.cross(u, [1.0, 0.0, 0.0]))
    e2 = np.cross(u, e1)
    a = np.radians(alpha_deg)
    row = np.cos(a) * e1 + np.sin(a) * e2
    col = -np.sin(a) * e1 + np.cos(a) * e2
    if flip:
        col = -col
    normal = np.cross(row, col)
    c0 = np.array([10.0, -20.0, 30.0])  # base centre, arbitrary
    heights = np.arange(n) * spacing
    centres = c0[None, :] + heights[:, None] * u[None, :]
    order = np.argsort(centres @ normal)  # Volume order: increasing along the normal
    centres, heights = centres[order], heights[order]
    half = (size - 1) / 2.0 * px
    positions = centres - half * row - half * col
    ii, jj = np.indices((size, size))
    labels = np.zeros((n, size, size), dtype=np.uint8)
    for k in range(n):
        p = positions[k] + (jj[..., None] * px) * row + (ii[..., None] * px) * col
        d = p - c0
        h = d @ u
        r = d - h[..., None] * u
        rho = np.linalg.norm(r, axis=-1)
        rc = r_cav * (1.0 - cavity_taper * heights[k] / max(heights.max(), 1.0))
        is_cap = cap and heights[k] == heights.max()
        myo = (rho < r_epi) if is_cap else (rho >= rc) & (rho < r_epi)
        if not is_cap:
            labels[k][rho < rc] = 1
        labels[k][myo] = 2
        for w, half_deg, r_outer, lab in wedges:
            wv = rotation @ _unit(w)
            cosang = (r @ wv) / np.maximum(rho, 1e-9)
            inside = myo & (rho < r_outer) & ((cosang > np.cos(np.radians(half_deg))) | is_cap)
            labels[k][inside] = lab
    vol = Volume(
        pixels=np.zeros_like(labels, dtype=np.int16),
        pixel_spacing=(px, px),
        row_direction=row,
        column_direction=col,
        positions=positions,
        slice_spacing=spacing,
        slice_thickness=spacing,
    )
    return labels, vol, u


def aha(labels, vol, **kw):
    """`compute_aha` with the anterior reference unless the test picks another one."""
    if "rv_insertion_lps" not in kw:
        kw.setdefault("reference_direction_lps", ANTERIOR_LPS)
    return compute_aha(labels, vol, **kw)


def _enhanced_segments(result, min_percent: float = 5.0) -> set[int]:
    return {s.number for s in result.segments
            if s.percent_enhanced is not None and s.percent_enhanced > min_percent}


def _dir(deg_from_anterior_towards_right: float) -> np.ndarray:
    t = np.radians(deg_from_anterior_towards_right)
    return np.cos(t) * ANT + np.sin(t) * RIGHT


CASES = [
    # (wedge direction, expected basal, mid, apical segment)
    (_dir(60), {2, 8, 14}),      # anteroseptal: between anterior and the RV side
    (_dir(120), {3, 9, 14}),     # inferoseptal
    (POST, {4, 10, 15}),         # inferior
    (_dir(240), {5, 11, 16}),    # inferolateral
    (_dir(300), {6, 12, 16}),    # anterolateral (towards the patient's left)
    (ANT, {1, 7, 13}),           # anterior
]


@pytest.mark.parametrize("w,expected", CASES)
@pytest.mark.parametrize("alpha,flip", [(0.0, False), (37.0, False), (200.0, True), (90.0, True)])
def test_wedge_lands_in_the_anatomical_segment(w, expected, alpha, flip) -> None:
    labels, vol, _ = phantom(wedges=[(w, 12.0, 25.0, 3)], alpha_deg=alpha, flip=flip)
    result = aha(labels, vol)
    assert result.apex_end_source == "anatomy"
    assert _enhanced_segments(result) == expected


@pytest.mark.parametrize("tilt", [25.0, -40.0])
def test_tilted_heart_gives_the_same_segments(tilt) -> None:
    # Rotating heart, wedge and image planes together about the A-P axis keeps "anterior".
    labels, vol, _ = phantom(wedges=[(_dir(60), 12.0, 25.0, 3)], rotation=_rot_y(tilt),
                             alpha_deg=15.0)
    assert _enhanced_segments(aha(labels, vol)) == {2, 8, 14}


def test_turning_the_wedge_half_a_turn_moves_it_to_the_opposite_segment() -> None:
    a = aha(*phantom(wedges=[(_dir(60), 12.0, 25.0, 3)])[:2])
    b = aha(*phantom(wedges=[(-_dir(60), 12.0, 25.0, 3)])[:2])
    assert _enhanced_segments(a) == {2, 8, 14}
    assert _enhanced_segments(b) == {5, 11, 16}


def test_levels_thirds_and_apex_cap() -> None:
    labels, vol, u = phantom(n=7, cap=True)
    result = aha(labels, vol)
    base_to_apex = np.argsort(vol.positions @ u)
    assert [result.slice_levels[k] for k in base_to_apex] == [
        "basal", "basal", "mid", "mid", "apical", "apical", "apex"]
    assert result.segment(17).covered
    assert all(s.covered for s in result.segments)


def test_apex_cap_enhancement_is_its_volume_fraction() -> None:
    labels, vol, _ = phantom(n=4, cap=True, wedges=[(ANT, 10.0, 25.0, 3)])
    s17 = aha(labels, vol).segment(17)
    assert s17.percent_enhanced == pytest.approx(100.0)
    assert s17.mean_transmurality_percent == pytest.approx(100.0)


def test_three_slices_one_per_level_and_two_slices_skip_mid() -> None:
    labels, vol, u = phantom(n=3)
    r = aha(labels, vol)
    order = np.argsort(vol.positions @ u)
    assert [r.slice_levels[k] for k in order] == ["basal", "mid", "apical"]
    labels, vol, u = phantom(n=2)
    r = aha(labels, vol)
    order = np.argsort(vol.positions @ u)
    assert [r.slice_levels[k] for k in order] == ["basal", "apical"]
    assert not r.segment(7).covered and r.segment(7).percent_enhanced is None


def test_transmural_wedge_known_fractions() -> None:
    # Full-thickness wedge 40 deg wide centred in basal/mid segment 2 (60 deg) and apical 14 (90).
    labels, vol, _ = phantom(wedges=[(_dir(60), 20.0, 25.0, 3)], n=6)
    r = aha(labels, vol, ray_step_deg=0.5)
    # Wedge 40..80 deg: all of it in 2 and 8 (30..90); apical septal is 45..135, so 35 deg of
    # it there and 5 deg in apical anterior 13 (-45..45).
    for seg, inside, width in ((2, 40.0, 60.0), (8, 40.0, 60.0), (14, 35.0, 90.0), (13, 5.0, 90.0)):
        s = r.segment(seg)
        assert s.mean_transmurality_percent == pytest.approx(100 * inside / width, abs=3.0)
        assert s.percent_enhanced == pytest.approx(100 * inside / width, abs=3.0)
    assert r.segment(1).mean_transmurality_percent == pytest.approx(0.0, abs=0.5)
    assert r.n_transmural_segments == 2  # 66.7 % in 2 and 8; apical 39 %


def test_subendocardial_wedge_half_transmurality() -> None:
    # Inner half of the wall only (15..20 mm of 15..25): each ray in it is 50 % enhanced.
    labels, vol, _ = phantom(wedges=[(_dir(60), 29.0, 20.0, 3)], n=6)
    r = aha(labels, vol, ray_step_deg=0.5)
    s = r.segment(2)
    assert s.mean_transmurality_percent == pytest.approx(50.0 * 58 / 60, abs=4.0)
    area_fraction = (20.0**2 - 15.0**2) / (25.0**2 - 15.0**2)  # 0.4375
    assert s.percent_enhanced == pytest.approx(100 * area_fraction * 58 / 60, abs=4.0)
    assert r.n_transmural_segments == 0


def test_mvo_counts_as_enhanced() -> None:
    labels, vol, _ = phantom(wedges=[(_dir(180), 20.0, 25.0, 3), (_dir(180), 8.0, 25.0, 4)])
    r = aha(labels, vol)
    assert _enhanced_segments(r) == {4, 10, 15}
    assert r.segment(4).mean_transmurality_percent == pytest.approx(100 * 40 / 60, abs=3.0)


def test_rv_insertion_reference_turns_the_segments() -> None:
    # RV insertion straight to the patient's right of the LV: the anterior segment now centres
    # 30 deg before it (at 60 deg), so the anteroseptal-by-default wedge becomes anterior.
    labels, vol, u = phantom(wedges=[(_dir(60), 12.0, 25.0, 3)])
    centre = np.array([10.0, -20.0, 30.0])
    insertion = centre + 40.0 * RIGHT + 50.0 * u  # any height: it is projected per slice
    r = aha(labels, vol, rv_insertion_lps=insertion)
    assert r.reference == "rv-insertion"
    assert _enhanced_segments(r) == {1, 7, 13}


def test_other_reference_direction() -> None:
    # Reference = patient left: the anterior segment is centred on the left wall. Seen from
    # the apex the order runs anterior -> right -> posterior -> left, so the anterior wall is
    # 90 deg counter-clockwise of left, and "anterior + 30 deg towards left" is at +60 deg.
    r = aha(*phantom(wedges=[(LEFT, 12.0, 25.0, 3)])[:2], reference_direction_lps=LEFT)
    assert _enhanced_segments(r) == {1, 7, 13}
    w = np.cos(np.radians(30)) * ANT + np.sin(np.radians(30)) * LEFT
    r = aha(*phantom(wedges=[(w, 12.0, 25.0, 3)])[:2], reference_direction_lps=LEFT)
    assert _enhanced_segments(r) == {2, 8, 14}


def test_apex_end_from_cavity_when_the_axis_is_ambiguous() -> None:
    # Long axis perpendicular to the anatomical prior: the shrinking cavity decides.
    u = _unit([1.0, 1.0, 0.0])
    labels, vol, u = phantom(u=u, cavity_taper=0.6)
    r = aha(labels, vol)
    assert r.apex_end_source == "cavity"
    apex_slice = 0 if r.apex_end == "first" else -1
    assert np.argsort(vol.positions @ u)[-1] == np.arange(vol.shape[0])[apex_slice]
    forced = aha(labels, vol, apex_end="first" if r.apex_end == "last" else "last")
    assert forced.apex_end_source == "caller" and forced.apex_end != r.apex_end


def test_empty_labels_cover_nothing() -> None:
    labels, vol, _ = phantom()
    r = aha(np.zeros_like(labels), vol)
    assert not any(s.covered for s in r.segments)
    assert r.n_transmural_segments == 0


# --------------------------------------------------------------------------- real geometry

MYOPS = Path(os.environ.get("LGENODE_DATA_DIR", Path(__file__).resolve().parents[3] / "shared" / "data")) / "myops2020"


@pytest.mark.data
@pytest.mark.parametrize("case", [f"Case{n}" for n in range(3001, 3016)])
def test_default_reference_puts_the_wall_next_to_the_rv_in_septal_segments(case) -> None:
    """MyoPS labels the RV blood pool (600): mark the LV wall within 8 px of it as "enhanced".

    With the default reference (projected superior) that wall must land in the septal segments
    (2, 3, 8, 9, 14) and never in the lateral ones: this checks the handedness and the default
    on real oblique geometry. The anterior reference, for comparison, puts part of it in the
    anterolateral segments in most cases (measured, see models/aha.py).
    """
    from scipy.ndimage import binary_dilation

    from models.io.nifti import load_nifti

    gd = load_nifti(MYOPS / f"{case}_gd.nii.gz")
    raw = np.rint(gd.pixels).astype(int)
    labels = np.zeros(raw.shape, dtype=np.uint8)
    labels[raw == 500] = 1
    labels[np.isin(raw, (200, 1220, 2221))] = 2
    near_rv = np.stack([binary_dilation(raw[k] == 600, iterations=8) for k in range(raw.shape[0])])
    labels[(labels == 2) & near_rv] = 3
    r = compute_aha(labels, gd)
    assert r.reference == "patient-superior" and r.apex_end_source == "anatomy"
    enh = {s.number: s.enhanced_voxels for s in r.segments}
    total = sum(enh.values())
    assert total > 0
    assert sum(enh[s] for s in (5, 6, 11, 12, 16)) == 0
    assert sum(enh[s] for s in (2, 3, 8, 9, 14)) / total > 0.8
