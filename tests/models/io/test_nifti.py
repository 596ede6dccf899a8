"""load_nifti / save_nifti axis order and RAS->LPS geometry; load_png_stack."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from PIL import Image

from models.io import GeometryError, load_nifti, load_png_stack, save_nifti
from models.volume import Volume
from pipeline.datasets.paths import myops_dir
from tests.support.require import missing

RAS_TO_LPS = np.diag([-1.0, -1.0, 1.0, 1.0])


def random_affine(seed: int, left_handed: bool) -> np.ndarray:
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    if (np.linalg.det(q) < 0) != left_handed:
        q[:, 2] *= -1
    a = np.eye(4)
    a[:3, :3] = q @ np.diag([0.73, 0.73, 12.0])
    a[:3, 3] = rng.uniform(-150, 150, size=3)
    return a


def world_lps(v: Volume, k: int, i: int, j: int) -> np.ndarray:
    row_sp, col_sp = v.pixel_spacing
    return v.positions[k] + j * col_sp * v.row_direction + i * row_sp * v.column_direction


def nifti_value_at(img: nib.Nifti1Image, lps: np.ndarray) -> float:
    ijk = np.linalg.solve(img.affine, np.r_[RAS_TO_LPS[:3, :3] @ lps, 1.0])[:3]
    idx = np.rint(ijk).astype(int)
    assert np.allclose(ijk, idx, atol=1e-4), "a voxel centre must map onto a voxel centre"
    return float(np.asarray(img.dataobj)[tuple(idx)])


@pytest.mark.parametrize("left_handed", [False, True])
def test_voxels_land_where_the_nifti_affine_puts_them(tmp_path: Path, left_handed: bool) -> None:
    data = np.random.default_rng(1).integers(0, 4000, size=(30, 34, 5)).astype(np.int16)
    img = nib.Nifti1Image(data, random_affine(2, left_handed))
    nib.save(img, tmp_path / "x.nii.gz")
    v = load_nifti(tmp_path / "x.nii.gz")
    assert v.shape == (5, 34, 30)
    assert v.pixel_spacing == pytest.approx((0.73, 0.73))
    assert v.slice_spacing == pytest.approx(12.0)
    # Positions increase along the normal, whatever the handedness of the file.
    assert np.all(np.diff(v.positions @ v.normal) > 0)
    np.testing.assert_allclose(np.diff(v.positions, axis=0), np.tile(12.0 * v.normal, (4, 1)), atol=1e-4)
    rng = np.random.default_rng(3)
    for _ in range(50):
        k, i, j = (int(rng.integers(0, s)) for s in v.shape)
        assert v.pixels[k, i, j] == nifti_value_at(img, world_lps(v, k, i, j))


def test_save_nifti_roundtrip_keeps_world_geometry(tmp_path: Path) -> None:
    data = np.random.default_rng(4).integers(0, 5, size=(20, 24, 4)).astype(np.uint8)
    nib.save(nib.Nifti1Image(data, random_affine(5, left_handed=True)), tmp_path / "in.nii.gz")
    v = load_nifti(tmp_path / "in.nii.gz")
    labels = (v.pixels > 2).astype(np.uint8)
    save_nifti(labels, v, tmp_path / "out.nii.gz")
    back = load_nifti(tmp_path / "out.nii.gz")
    np.testing.assert_array_equal(back.pixels, labels)
    np.testing.assert_allclose(back.positions, v.positions, atol=1e-4)
    np.testing.assert_allclose(back.row_direction, v.row_direction, atol=1e-6)
    np.testing.assert_allclose(back.column_direction, v.column_direction, atol=1e-6)
    out = nib.load(tmp_path / "out.nii.gz")
    assert int(out.header["sform_code"]) == 1 and int(out.header["qform_code"]) == 1
    with pytest.raises(ValueError, match="shape"):
        save_nifti(labels[:, :-1], v, tmp_path / "bad.nii.gz")


def test_sheared_and_4d_inputs(tmp_path: Path) -> None:
    a = random_affine(6, left_handed=False)
    sheared = a.copy()
    sheared[:3, 2] += 3.0 * a[:3, 0] / np.linalg.norm(a[:3, 0])
    nib.save(nib.Nifti1Image(np.zeros((8, 8, 3), np.int16), sheared), tmp_path / "s.nii.gz")
    with pytest.raises(GeometryError, match="sheared"):
        load_nifti(tmp_path / "s.nii.gz")
    nib.save(nib.Nifti1Image(np.zeros((8, 8, 3, 1), np.int16), a), tmp_path / "one.nii.gz")
    assert load_nifti(tmp_path / "one.nii.gz").shape == (3, 8, 8)
    nib.save(nib.Nifti1Image(np.zeros((8, 8, 3, 2), np.int16), a), tmp_path / "two.nii.gz")
    with pytest.raises(GeometryError, match="3-D"):
        load_nifti(tmp_path / "two.nii.gz")


def test_myops_case_geometry() -> None:
    path = myops_dir() / "Case3001_LGE.nii.gz"
    if not path.is_file():
        missing("data", f"MyoPS data not found at {path} (set LGENODE_DATA_DIR)")
    img = nib.load(path)
    v = load_nifti(path)
    assert v.shape == tuple(np.asarray(img.shape)[[2, 1, 0]])
    assert v.slice_spacing == pytest.approx(12.0, abs=0.01)
    assert 0.7 < v.pixel_spacing[0] < 0.8
    # Oblique short axis: the normal is not aligned with any patient axis.
    assert np.max(np.abs(v.normal)) < 0.95
    np.testing.assert_array_equal(v.pixels.dtype, np.int16)
    rng = np.random.default_rng(0)
    for _ in range(20):
        k, i, j = (int(rng.integers(0, s)) for s in v.shape)
        assert v.pixels[k, i, j] == nifti_value_at(img, world_lps(v, k, i, j))


def test_png_stack_sorted_with_unknown_geometry(tmp_path: Path) -> None:
    for k in (2, 0, 1):
        Image.fromarray(np.full((6, 5), 10 * k, np.uint8)).save(tmp_path / f"slice{k:03d}.png")
    v = load_png_stack(tmp_path)
    assert v.shape == (3, 6, 5)
    assert [float(v.pixels[k, 0, 0]) for k in range(3)] == [0.0, 10.0, 20.0]
    assert v.meta["spacing_known"] is False
    assert v.pixel_spacing == (1.0, 1.0)
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(tmp_path / "slice003.png")
    with pytest.raises(GeometryError, match="different sizes"):
        load_png_stack(tmp_path)
