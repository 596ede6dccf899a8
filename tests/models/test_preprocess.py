"""The preprocessing contract: intensity, resampling, localisation, crop and their inverses."""

from __future__ import annotations

import glob
import re
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest

from models import preprocess as pp


def dice(a: np.ndarray, b: np.ndarray) -> float:
    s = a.sum() + b.sum()
    return 1.0 if s == 0 else 2.0 * np.logical_and(a, b).sum() / s


# ---------------------------------------------------------------- intensity
def test_normalize_is_invariant_to_bit_depth_and_offset(phantom):
    img, _ = phantom()
    as8 = np.round(img / img.max() * 255).astype(np.uint8)
    as16 = as8.astype(np.uint16) * 16 + 100  # same picture stored as 12-bit with an offset
    a, b = pp.normalize_intensity(as8), pp.normalize_intensity(as16)
    assert a.dtype == np.float32 and a.shape == img.shape
    np.testing.assert_allclose(a, b, atol=1e-5)
    assert a.min() >= 0.0 and a.max() <= pp.CLIP_MAX


def test_normalize_ignores_zero_padding_and_maps_percentiles(phantom):
    img, lab = phantom()
    padded = np.pad(img, ((0, 0), (100, 100), (100, 100)))  # lots of air / padding
    a = pp.normalize_intensity(img)
    b = pp.normalize_intensity(padded)[:, 100:-100, 100:-100]
    np.testing.assert_allclose(a, b, atol=0.02)
    fg = img[img > 0.1 * np.percentile(img, 99.9)]
    lo, hi = np.percentile(fg, [1, 99])
    assert np.isclose(pp.normalize_intensity(img)[img >= hi].min(), 1.0, atol=0.02)
    assert pp.normalize_intensity(img)[img <= lo].max() == 0.0


def test_normalize_constant_stack_is_zero():
    out = pp.normalize_intensity(np.full((2, 8, 8), 7, np.int16))
    assert out.dtype == np.float32 and not out.any()


# ---------------------------------------------------------------- resampling
def test_resample_shape_and_identity_at_target_spacing(phantom, volume_of):
    img, _ = phantom()
    out, info = pp.resample_inplane(volume_of(img, (0.75, 0.6)))
    assert info.output_shape == (3, round(200 * 0.75 / 1.25), round(240 * 0.6 / 1.25))
    assert out.shape == info.output_shape and out.dtype == np.float32
    same, info2 = pp.resample_inplane(volume_of(img, (pp.TARGET_SPACING_MM,) * 2))
    np.testing.assert_allclose(same, img, atol=1e-3)
    assert info2.output_shape == info2.input_shape


def test_resample_keeps_anatomy_in_place_in_mm(phantom, volume_of):
    _, lab = phantom()
    vol = volume_of(lab.astype(np.float32), (0.7, 0.9))
    info = pp.resample_inplane(vol)[1]
    res = pp.resample_labels_inplane(lab, info)
    for k in range(3):
        r0, c0 = np.argwhere(lab[k] == 1).mean(0)
        r1, c1 = np.argwhere(res[k] == 1).mean(0)
        # pixel centres in mm from the field-of-view corner
        assert abs((r0 + 0.5) * 0.7 - (r1 + 0.5) * 1.25) < 0.3
        assert abs((c0 + 0.5) * 0.9 - (c1 + 0.5) * 1.25) < 0.3


def test_resample_labels_and_back_preserves_labels(phantom, volume_of):
    # realistic sizes at 0.73 mm: LV outer diameter ~67 mm, wall ~16 mm
    _, lab = phantom(rows=400, cols=420, centre=(200.0, 210.0), scale=1.7)
    info = pp.resample_inplane(volume_of(lab.astype(np.float32), (0.73, 0.73)))[1]
    coarse = pp.resample_labels_inplane(lab, info)
    back = pp.resample_back(coarse, info)
    assert back.shape == lab.shape and back.dtype == np.uint8
    for c in (1, 2, 3):
        assert dice(back == c, lab == c) > 0.95, c
    np.testing.assert_array_equal(np.unique(back), np.unique(lab))
    # the inverse is exact up to pixel boundaries: back onto the coarse grid gives the coarse labels
    again = pp.resample_labels_inplane(back, info)
    for c in range(5):
        assert dice(again == c, coarse == c) > 0.97, c


def test_resample_back_at_grid_borders_and_empty(volume_of):
    lab = np.zeros((2, 150, 170), np.uint8)
    lab[0, :30, :40] = 2  # touches the top-left corner
    lab[1, -25:, -35:] = 3  # touches the bottom-right corner
    info = pp.resample_inplane(volume_of(lab.astype(np.float32), (0.8, 0.7)))[1]
    back = pp.resample_back(pp.resample_labels_inplane(lab, info), info)
    assert dice(back[0] == 2, lab[0] == 2) > 0.95 and dice(back[1] == 3, lab[1] == 3) > 0.95
    assert not pp.resample_back(np.zeros(info.output_shape, np.uint8), info).any()


def test_volume_without_geometry_is_not_rescaled(phantom, volume_of):
    img, _ = phantom()
    vol = volume_of(img, (1.0, 1.0))
    vol.meta["spacing_known"] = False
    out, info = pp.resample_inplane(vol)
    assert info.output_shape == img.shape
    np.testing.assert_allclose(out, img, atol=1e-3)


# ---------------------------------------------------------------- crop
@pytest.mark.parametrize("centre", [(100.0, 120.0), (3.0, 5.0), (198.2, 239.7), (-10.0, 250.0), (64.0, 64.0)])
def test_crop_uncrop_round_trip_pads_never_truncates(centre):
    rng = np.random.default_rng(1)
    stack = rng.integers(1, 5, (2, 200, 240)).astype(np.uint8)
    roi, info = pp.crop_roi(stack, centre)
    assert roi.shape == (2, pp.ROI_SIZE, pp.ROI_SIZE)
    r, c = int(np.floor(centre[0] + 0.5)), int(np.floor(centre[1] + 0.5))
    if 0 <= r < 200 and 0 <= c < 240:
        assert roi[0, 64, 64] == stack[0, r, c]  # the centre lands on the ROI centre, not shifted
    back = pp.uncrop(roi, info)
    assert back.shape == stack.shape
    inside = np.zeros(stack.shape[1:], bool)
    inside[max(info.top, 0) : info.top + 128, max(info.left, 0) : info.left + 128] = True
    np.testing.assert_array_equal(back[:, inside], stack[:, inside])
    assert not back[:, ~inside].any()
    # everything of the ROI that is not padding came from the image
    assert (roi > 0).sum() == inside.sum() * 2


def test_crop_2d_input():
    img = np.arange(50 * 60, dtype=np.float32).reshape(50, 60)
    roi, info = pp.crop_roi(img, (25, 30))
    assert roi.shape == (128, 128)
    np.testing.assert_array_equal(pp.uncrop(roi, info), img)


# ---------------------------------------------------------------- localisation
def test_localiser_grid_maps_back_to_stack_coordinates(phantom):
    """A perfect 'network' that returns the LV mask on its grid gives the LV centroid of the stack."""
    _, lab = phantom(rows=180, cols=300, centre=(120.0, 200.0))

    def oracle(x: np.ndarray) -> np.ndarray:
        assert x.shape == (3, pp.LOCALISER_SIZE, pp.LOCALISER_SIZE, 1) and x.dtype == np.float32
        return pp.localiser_target(lab)

    r, c = pp.localise_lv(pp.normalize_intensity(lab.astype(np.float32)), oracle)
    assert abs(r - 120.0) < 1.5 and abs(c - 200.0) < 1.5


def test_localiser_that_finds_nothing_falls_back_to_heuristic(phantom, volume_of):
    img, _ = phantom()
    x, info = pp.preprocess_volume(volume_of(img), localiser=lambda b: np.zeros_like(b))
    assert info.localised_by == "heuristic"


def test_heuristic_finds_blood_pool_despite_bright_fat(phantom):
    img, _ = phantom(centre=(110.0, 140.0))
    img[:, 20:40, 20:200] = 1200  # bright chest-wall fat band near the edge
    r, c = pp.heuristic_lv_centre(pp.normalize_intensity(img))
    assert np.hypot(r - 110.0, c - 140.0) < 6.0


def test_centre_from_probability_keeps_largest_region():
    p = np.zeros((2, 64, 64), np.float32)
    p[:, 10:30, 10:30] = 0.9
    p[:, 50:53, 50:53] = 1.0  # small, confident false positive
    r, c = pp.centre_from_probability(p)
    assert abs(r - 19.5) < 0.5 and abs(c - 19.5) < 0.5
    assert pp.centre_from_probability(np.zeros((1, 8, 8), np.float32)) is None


def test_unconfident_localiser_falls_back_to_heuristic():
    """Out-of-distribution input: a network whose mean LV probability never reaches
    MIN_LV_PROBABILITY is not trusted, however clear its weak blob is."""
    p = np.zeros((4, 64, 64), np.float32)
    p[:, 10:30, 10:30] = 0.4
    assert pp.centre_from_probability(p) is None
    assert pp.centre_from_probability(p, min_probability=0.3) is not None
    p[:2, 10:30, 10:30] = 1.0  # confident on half the slices: mean 0.7
    assert pp.centre_from_probability(p) is not None


# ---------------------------------------------------------------- whole path
def test_preprocess_volume_and_back_on_input_grid(phantom, volume_of):
    img, lab = phantom(rows=400, cols=420, centre=(210.0, 190.0), scale=1.7)
    vol = volume_of(img, (0.74, 0.74))
    x, info = pp.preprocess_volume(vol)
    assert x.shape == (3, 128, 128, 1) and x.dtype == np.float32
    assert 0.0 <= x.min() and x.max() <= pp.CLIP_MAX
    gt = pp.lv_centre_from_mask(pp.resample_labels_inplane(lab, info.resample))
    assert np.hypot(gt[0] - info.centre[0], gt[1] - info.centre[1]) < 6.0
    # labels cut with the same geometry and mapped back are the input labels
    roi_labels, _ = pp.crop_roi(pp.resample_labels_inplane(lab, info.resample), info.centre)
    back = pp.postprocess_to_input_grid(roi_labels, info)
    assert back.shape == lab.shape
    for c in (1, 2, 3):
        assert dice(back == c, lab == c) > 0.93


def test_preprocess_volume_with_given_centre(phantom, volume_of):
    img, _ = phantom()
    x, info = pp.preprocess_volume(volume_of(img), centre=(10.0, 20.0))
    assert info.localised_by == "given" and info.centre == (10.0, 20.0)
    assert info.crop.top == 10 - 64 and info.crop.left == 20 - 64
    assert not x[:, :40, :40].any()  # the padded corner stays zero after normalisation


def test_training_stack_centres_lv_and_jitters(phantom):
    img, lab = phantom(rows=256, cols=256, centre=(100.0, 150.0))
    x, y, info = pp.preprocess_training_stack(img, lab)
    assert x.shape == (3, 128, 128, 1) and y.shape == (3, 128, 128) and y.dtype == np.uint8
    assert (y > 0).sum() == (lab > 0).sum()  # whole LV inside the ROI
    r, c = np.argwhere(y.any(0)).mean(0)
    assert abs(r - 64) < 1.5 and abs(c - 64) < 1.5
    rng = np.random.default_rng(0)
    shifts = [pp.preprocess_training_stack(img, lab, jitter=10, rng=rng)[2] for _ in range(20)]
    tops = np.array([s.top for s in shifts])
    assert tops.min() >= info.top - 10 and tops.max() <= info.top + 10 and len(set(tops)) > 3
    xs, ys = pp.preprocess_training_slice(img[0], lab[0])
    assert xs.shape == (128, 128, 1) and ys.shape == (128, 128)


def test_localiser_training_pair(phantom):
    img, lab = phantom(rows=256, cols=256)
    x, y = pp.localiser_training_pair(pp.normalize_intensity(img), lab)
    assert x.shape == y.shape == (3, 128, 128, 1)
    assert 0.0 <= y.min() and y.max() <= 1.0
    assert abs(y.sum() * 4 - (lab > 0).sum()) / (lab > 0).sum() < 0.05  # area kept at half resolution


# ---------------------------------------------------------------- the target spacing is measured
def _eq_diameter(mask2d_area: float) -> float:
    return float(np.sqrt(4.0 * mask2d_area / np.pi))


def test_target_spacing_matches_measured_lv_scale(shared_data: Path):
    """TARGET_SPACING_MM = median LV size in MyoPS (mm) / median LV size in EMIDEC PNGs (pixels)."""
    from PIL import Image

    from models.io import load_nifti

    per_case: dict[str, float] = defaultdict(float)
    for p in glob.glob(str(shared_data / "emidec" / "masks" / "*.png")):
        case = re.match(r"(Case_\w+?)_slice", Path(p).name).group(1)  # type: ignore[union-attr]
        per_case[case] = max(per_case[case], float((np.asarray(Image.open(p)) > 0).sum()))
    emidec_px = np.median([_eq_diameter(a) for a in per_case.values()])
    myops_mm = []
    for f in sorted(glob.glob(str(shared_data / "myops2020" / "Case*_gd.nii.gz"))):
        v = load_nifti(f)
        lv = np.isin(v.pixels, [500, 200, 1220, 2221])
        area = lv.sum(axis=(1, 2)).max() * v.pixel_spacing[0] * v.pixel_spacing[1]
        myops_mm.append(_eq_diameter(area))
    ratio = float(np.median(myops_mm) / emidec_px)
    assert len(per_case) >= 50 and len(myops_mm) >= 10
    assert abs(ratio - pp.TARGET_SPACING_MM) < 0.03, ratio
