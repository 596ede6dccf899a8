"""Volumes, mass and percentages on hand-made label volumes with known answers."""

from __future__ import annotations

import json

import numpy as np
import pytest

from models.measurements import (
    MYOCARDIAL_DENSITY_G_PER_ML,
    Measurements,
    compute_measurements,
    structure_masks,
)
from models.volume import Volume


def _volume(shape: tuple[int, int, int], pixel_spacing=(1.5, 2.0), spacing: float | None = 10.0,
            thickness: float | None = 8.0) -> Volume:
    n = shape[0]
    step = spacing if spacing is not None else 0.0
    return Volume(
        pixels=np.zeros(shape, dtype=np.int16),
        pixel_spacing=pixel_spacing,
        row_direction=np.array([1.0, 0.0, 0.0]),
        column_direction=np.array([0.0, 1.0, 0.0]),
        positions=np.array([[0.0, 0.0, k * step] for k in range(n)]),
        slice_spacing=spacing if n > 1 else None,
        slice_thickness=thickness,
    )


def test_counts_times_voxel_volume_with_slice_spacing_not_thickness() -> None:
    labels = np.zeros((3, 20, 20), dtype=np.uint8)
    labels[0, :10, :10] = 1        # 100 cavity
    labels[1, :5, :] = 2           # 100 normal myocardium
    labels[1, 5:8, :] = 3          # 60 infarct
    labels[2, 0, :5] = 4           # 5 MVO
    vol = _volume(labels.shape)    # 1.5 x 2.0 x 10 mm (spacing) = 0.03 ml; thickness 8 ignored
    m = compute_measurements(labels, vol)
    voxel = 1.5 * 2.0 * 10.0 / 1000.0
    assert m.voxel_volume_ml == pytest.approx(voxel)
    assert m.lv_cavity_ml == pytest.approx(100 * voxel)
    assert m.myocardium_ml == pytest.approx(165 * voxel)     # 2 + 3 + 4
    assert m.infarct_ml == pytest.approx(65 * voxel)         # 3 + 4
    assert m.mvo_ml == pytest.approx(5 * voxel)
    assert m.myocardial_mass_g == pytest.approx(165 * voxel * MYOCARDIAL_DENSITY_G_PER_ML)
    assert m.infarct_percent_of_myocardium == pytest.approx(100 * 65 / 165)
    assert m.mvo_percent_of_myocardium == pytest.approx(100 * 5 / 165)
    assert m.n_slices == 3
    assert m.method["through_plane"] == "slice_spacing"


def test_gap_between_slices_changes_volume_but_not_percentages() -> None:
    labels = np.zeros((2, 8, 8), dtype=np.uint8)
    labels[:, 2:6, 2:6] = 2
    labels[:, 3:5, 3:5] = 3
    a = compute_measurements(labels, _volume(labels.shape, spacing=5.0, thickness=5.0))
    b = compute_measurements(labels, _volume(labels.shape, spacing=10.0, thickness=5.0))
    assert b.myocardium_ml == pytest.approx(2 * a.myocardium_ml)
    assert b.infarct_percent_of_myocardium == pytest.approx(a.infarct_percent_of_myocardium)
    assert a.infarct_percent_of_myocardium == pytest.approx(25.0)


def test_single_slice_uses_thickness() -> None:
    labels = np.zeros((1, 4, 4), dtype=np.uint8)
    labels[0, :2, :2] = 1
    m = compute_measurements(labels, _volume(labels.shape, pixel_spacing=(1.0, 1.0), thickness=6.0))
    assert m.lv_cavity_ml == pytest.approx(4 * 6.0 / 1000.0)
    assert m.method["through_plane"] == "slice_thickness"


def test_no_myocardium_gives_zero_percent_not_nan() -> None:
    labels = np.zeros((2, 4, 4), dtype=np.uint8)
    labels[0, 0, 0] = 1
    m = compute_measurements(labels, _volume(labels.shape))
    assert m.myocardium_ml == 0.0
    assert m.infarct_percent_of_myocardium == 0.0
    assert m.mvo_percent_of_myocardium == 0.0


def test_rejects_bad_labels_and_shapes() -> None:
    vol = _volume((2, 4, 4))
    with pytest.raises(ValueError, match="unexpected label"):
        compute_measurements(np.full((2, 4, 4), 7, dtype=np.uint8), vol)
    with pytest.raises(ValueError, match="shape"):
        compute_measurements(np.zeros((3, 4, 4), dtype=np.uint8), vol)


def test_structure_masks_nest() -> None:
    labels = np.array([[[0, 1, 2, 3, 4]]], dtype=np.uint8)
    masks = structure_masks(labels)
    assert masks["lv_cavity"].ravel().tolist() == [False, True, False, False, False]
    assert masks["myocardium"].ravel().tolist() == [False, False, True, True, True]
    assert masks["infarct"].ravel().tolist() == [False, False, False, True, True]
    assert masks["mvo"].ravel().tolist() == [False, False, False, False, True]


def test_json_round_trip_with_units() -> None:
    labels = np.zeros((2, 6, 6), dtype=np.uint8)
    labels[0, 1:3, 1:3] = 2
    labels[1, 1:3, 1:3] = 4
    m = compute_measurements(labels, _volume(labels.shape))
    d = json.loads(m.to_json())
    assert d["units"]["myocardium_ml"] == "ml"
    assert d["units"]["myocardial_mass_g"] == "g"
    assert d["units"]["infarct_percent_of_myocardium"] == "%"
    assert d["values"]["mvo_ml"] == pytest.approx(m.mvo_ml)
    assert Measurements.from_dict(d) == m
