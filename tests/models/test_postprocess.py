"""Each anatomical rule on small hand-made label arrays."""

from __future__ import annotations

import numpy as np
import pytest

from models import postprocess as post


def ring_slice(size: int = 40, c: tuple[int, int] = (20, 20), r_in: int = 7, r_out: int = 11) -> np.ndarray:
    rr, cc = np.mgrid[0:size, 0:size]
    d = np.hypot(rr - c[0], cc - c[1])
    sl = np.zeros((size, size), np.uint8)
    sl[d <= r_in] = 1
    sl[(d > r_in) & (d <= r_out)] = 2
    return sl


def test_rules_do_not_modify_input():
    sl = ring_slice()
    sl[2, 2] = 3
    before = sl.copy()
    post.apply_rules(sl)
    np.testing.assert_array_equal(sl, before)


def test_clean_heart_is_unchanged():
    stack = np.stack([ring_slice(), ring_slice(r_in=6, r_out=10)])
    stack[0][(stack[0] == 2) & (np.arange(40)[None, :] > 26)] = 3
    out = post.apply_rules(stack)
    np.testing.assert_array_equal(out, stack)
    assert out.dtype == np.uint8


def test_largest_component_3d_keeps_connected_slices_and_drops_islands():
    stack = np.stack([ring_slice(), ring_slice(r_in=5, r_out=9), np.zeros((40, 40), np.uint8)])
    stack[2, 18:22, 18:22] = 2  # small, but touches the heart through the slice above
    stack[1, 0:4, 0:4] = 2  # island far from the heart
    stack[2, 35:39, 35:39] = 1  # island on another slice
    out = post.keep_largest_heart_component(stack)
    assert out[2, 18:22, 18:22].all()
    assert not out[1, 0:4, 0:4].any() and not out[2, 35:39, 35:39].any()
    np.testing.assert_array_equal(out[0], stack[0])


def test_largest_component_2d_input():
    sl = ring_slice()
    sl[0:3, 0:3] = 1
    out = post.keep_largest_heart_component(sl)
    assert out.shape == sl.shape and not out[0:3, 0:3].any() and (out == 1).sum() == (ring_slice() == 1).sum()


def test_infarct_only_within_myocardium():
    sl = ring_slice()
    sl[19:21, 19:21] = 3  # infarct blob inside the cavity
    sl[36:38, 2:4] = 3  # infarct blob outside the heart
    sl[10:12, 18:22] = 3  # infarct on the ring: kept
    out = post.infarct_within_myocardium(sl)
    assert (out[19:21, 19:21] == 1).all()
    assert (out[36:38, 2:4] == 0).all()
    assert (out[10:12, 18:22] == 3).all()


def test_infarct_rule_keeps_large_pieces_of_a_broken_ring():
    sl = ring_slice()
    sl[:, 19:22][sl[:, 19:22] == 2] = 1  # cut the ring into left and right halves
    halves = sl.copy()
    halves[(halves == 2) & (np.arange(40)[None, :] > 21)] = 3  # right half infarcted
    out = post.infarct_within_myocardium(halves)
    np.testing.assert_array_equal(out, halves)


def test_mvo_must_touch_infarct():
    sl = ring_slice()
    sl[(sl == 2) & (np.arange(40)[None, :] > 26)] = 3  # infarct on the right
    sl[19:21, 28:30] = 4  # MVO inside the infarct
    sl[10:12, 19:21] = 4  # MVO on normal myocardium, away from infarct
    out = post.mvo_within_infarct(sl)
    assert (out[19:21, 28:30] == 4).all()
    assert (out[10:12, 19:21] == 2).all()


def test_fill_cavity_holes():
    sl = ring_slice()
    sl[19:21, 19:21] = 0  # hole in the cavity
    sl[17:19, 22:24] = 2  # papillary muscle labelled myocardium, enclosed by cavity
    out = post.fill_cavity_holes(sl)
    np.testing.assert_array_equal(out, ring_slice())


def test_fill_heart_holes_small_wall_hole_and_unlabelled_cavity():
    sl = ring_slice()
    wall_hole = (11, 20)  # mid-wall: distance 9 from the centre
    assert sl[wall_hole] == 2
    sl[wall_hole] = 0
    out = post.fill_heart_holes(sl)
    assert out[wall_hole] == 2
    empty_cavity = ring_slice()
    empty_cavity[empty_cavity == 1] = 0
    out2 = post.fill_heart_holes(empty_cavity)
    np.testing.assert_array_equal(out2, ring_slice())


@pytest.mark.parametrize("bad", [np.zeros(5, np.uint8), np.zeros((1, 1, 2, 2), np.uint8)])
def test_rejects_wrong_rank(bad):
    with pytest.raises(ValueError):
        post.apply_rules(bad)


def test_apply_rules_on_noisy_prediction():
    stack = np.stack([ring_slice(), ring_slice()])
    stack[(stack == 2) & (np.arange(40)[None, None, :] > 26)] = 3
    clean = stack.copy()
    noisy = stack.copy()
    noisy[0, 1:3, 1:3] = 3  # island
    noisy[1, 20, 20] = 0  # cavity hole
    mvo = np.zeros((40, 40), bool)
    mvo[10:12, 19:22] = True
    assert (noisy[0][mvo] == 2).all()
    noisy[0][mvo] = 4  # MVO without infarct
    out = post.apply_rules(noisy)
    assert not out[0, 1:3, 1:3].any()
    assert out[1, 20, 20] == 1
    assert (out[0][mvo] == 2).all()
    np.testing.assert_array_equal(out, clean)


def _infarct_stack(infarct_px: int) -> np.ndarray:
    """Two ring slices (wall 2) with ``infarct_px`` wall pixels of slice 0 set to infarct, one to MVO."""
    stack = np.stack([ring_slice(), ring_slice()])
    wall = np.argwhere(stack[0] == 2)[:infarct_px]
    stack[0][tuple(wall.T)] = 3
    if infarct_px:
        stack[0][tuple(wall[0])] = 4
    return stack


def test_small_infarct_is_reported_as_none():
    stack = _infarct_stack(3)
    pct = post.infarct_percent(stack)
    assert 0 < pct < 2.0
    out = post.drop_small_infarct(stack, 2.0)
    assert not np.isin(out, (3, 4)).any()
    # the wall keeps its extent: infarct and MVO became normal myocardium, nothing else moved
    np.testing.assert_array_equal(out > 0, stack > 0)
    assert (out == 2).sum() == np.isin(stack, (2, 3, 4)).sum()
    assert np.isin(stack, (3, 4)).sum() == 3  # input untouched


def test_infarct_at_or_above_the_minimum_is_kept():
    stack = _infarct_stack(40)
    pct = post.infarct_percent(stack)
    assert pct > 5
    np.testing.assert_array_equal(post.drop_small_infarct(stack, pct), stack)  # "below" is strict
    np.testing.assert_array_equal(post.drop_small_infarct(stack, 5.0), stack)
    small = _infarct_stack(3)
    for off in (0.0, None):
        np.testing.assert_array_equal(post.drop_small_infarct(small, off), small)
    assert post.infarct_percent(np.zeros((2, 5, 5), np.uint8)) == 0.0
