"""Localisation section of `evaluate`: centre error in the data set's units, LV kept in the ROI."""

from __future__ import annotations

import numpy as np
import pytest

from models import preprocess as pp
from models.volume import Volume
from pipeline.evaluate import localisation


def _volume(shape: tuple[int, int, int], spacing: float) -> Volume:
    n = shape[0]
    return Volume(np.zeros(shape, np.float32), (spacing, spacing), np.array([1.0, 0, 0]),
                  np.array([0, 1.0, 0]), np.array([[0, 0, 8.0 * k] for k in range(n)]))


def _disc(shape: tuple[int, int, int], centre: tuple[float, float], radius: float) -> np.ndarray:
    rr, cc = np.mgrid[0:shape[1], 0:shape[2]]
    disc = np.hypot(rr - centre[0], cc - centre[1]) <= radius
    labels = np.zeros(shape, np.uint8)
    labels[:, disc] = 2
    return labels


@pytest.mark.parametrize("spacing", [1.25, 0.625])
def test_centre_error_is_the_offset_in_mm(spacing: float) -> None:
    shape = (3, 200, 200)
    vol = _volume(shape, spacing)
    gt = _disc(shape, (100, 100), 20)
    # Centre given on the resampled (1.25 mm) grid, 16 rows and 12 columns away from the LV.
    k = spacing / pp.TARGET_SPACING_MM
    gt_res = ((100 + 0.5) * k - 0.5, (100 + 0.5) * k - 0.5)
    _, info = pp.preprocess_volume(vol, centre=(gt_res[0] + 16, gt_res[1] + 12))
    rec = localisation.localisation_record(info, gt)
    assert rec["centre_error"] == pytest.approx(20 * pp.TARGET_SPACING_MM, abs=1.5)
    assert rec["lv_in_roi"] == pytest.approx(1.0)


def test_emidec_units_are_pixels_and_a_missed_lv_is_counted() -> None:
    shape = (2, 256, 256)
    vol = _volume(shape, pp.TARGET_SPACING_MM)
    gt = _disc(shape, (128, 128), 25)
    # ROI (128 px) centred 90 px to the right: its left edge at column 154 keeps none of the
    # disc's columns 103-153.
    _, info = pp.preprocess_volume(vol, centre=(128, 218))
    rec = localisation.localisation_record(info, gt, mm_per_unit=pp.TARGET_SPACING_MM)
    assert rec["centre_error"] == pytest.approx(90, abs=0.5)
    assert rec["lv_in_roi"] == pytest.approx(0.0)
    # Half-way off: about half the disc is kept.
    _, info = pp.preprocess_volume(vol, centre=(128, 192))
    half = localisation.localisation_record(info, gt, mm_per_unit=pp.TARGET_SPACING_MM)
    assert 0.3 < half["lv_in_roi"] < 0.7  # type: ignore[operator]

    s = localisation.summarise([{**rec, "case": "a"}, {**half, "case": "b"},
                                {"case": "c", "centre_error": None, "lv_in_roi": None}])
    assert s["n_cases"] == 2 and s["cases_lv_cut"] == 2
    assert s["centre_error_max"] == pytest.approx(90, abs=0.5)


def test_no_lv_label_gives_no_value() -> None:
    shape = (2, 64, 64)
    _, info = pp.preprocess_volume(_volume(shape, 1.25), centre=(32, 32))
    assert localisation.localisation_record(info, np.zeros(shape, np.uint8)) == \
        {"centre_error": None, "lv_in_roi": None}
    assert localisation.summarise([]) == {"n_cases": 0}
