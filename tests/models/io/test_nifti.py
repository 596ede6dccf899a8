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
    out, src = nib.load(tmp_path / "out.nii.gz"), nib.load(tmp_path / "in.nii.gz")
    for code in ("sform_code", "qform_code"):  # the input's, not made up
        assert int(out.header[code]) == int(src.header[code])
    with pytest.raises(ValueError, match="shape"):
        save_nifti(labels[:, :-1], v, tmp_path / "bad.nii.gz")


def oblique_input(tmp_path: Path, left_handed: bool, form: str, shape: tuple[int, ...] = (40, 36, 4),
                  seed: int = 7) -> tuple[Path, np.ndarray]:
    """An oblique NIfTI (geometry in the qform, the sform or both) of a noisy image with a bright
    off-centre box; returns (path, the box as a mask in the file's own voxel order)."""
    rng = np.random.default_rng(seed)
    mask = np.zeros(shape, np.uint8)
    mask[5:14, 20:31, 1:3] = 1  # asymmetric in every axis: any flip or transpose moves it
    data = (rng.normal(100, 10, size=shape) + 400.0 * mask).astype(np.int16)
    affine = random_affine(seed, left_handed)
    img = nib.Nifti1Image(data, None)
    img.set_qform(affine if form in ("qform", "both") else None, code=1 if form != "sform" else 0)
    img.set_sform(affine if form in ("sform", "both") else None, code=2 if form != "qform" else 0)
    path = tmp_path / f"in_{form}_{int(left_handed)}.nii.gz"
    nib.save(img, path)
    return path, mask


@pytest.mark.parametrize("left_handed", [True, False])
@pytest.mark.parametrize("form", ["qform", "sform", "both"])
def test_save_nifti_writes_the_input_affine_and_voxel_order(tmp_path: Path, left_handed: bool,
                                                            form: str) -> None:
    """Labels of a NIfTI input come back on the input's exact array grid (issue 11, item 6)."""
    path, mask = oblique_input(tmp_path, left_handed, form)
    v = load_nifti(path)
    labels = (v.pixels > 300).astype(np.uint8)  # the box, found in the volume's own order
    save_nifti(labels, v, tmp_path / "labels.nii.gz")
    src, out = nib.load(path), nib.load(tmp_path / "labels.nii.gz")
    assert out.shape == src.shape
    np.testing.assert_array_equal(out.affine, src.affine)
    for get in ("get_qform", "get_sform"):
        a, code_a = getattr(src.header, get)(coded=True)
        b, code_b = getattr(out.header, get)(coded=True)
        assert code_a == code_b and (a is None and b is None or np.array_equal(a, b))
    np.testing.assert_array_equal(out.header["pixdim"], src.header["pixdim"])
    assert out.get_data_dtype() == np.uint8
    np.testing.assert_array_equal(np.asarray(out.dataobj), mask)


def test_save_nifti_of_a_nifti2_input_keeps_its_header(tmp_path: Path) -> None:
    path, mask = oblique_input(tmp_path, True, "both", seed=9)
    img = nib.load(path)
    nib.save(nib.Nifti2Image(np.asarray(img.dataobj), img.affine, header=img.header),
             tmp_path / "n2.nii.gz")
    v = load_nifti(tmp_path / "n2.nii.gz")
    save_nifti((v.pixels > 300).astype(np.uint8), v, tmp_path / "labels.nii.gz")
    src, out = nib.load(tmp_path / "n2.nii.gz"), nib.load(tmp_path / "labels.nii.gz")
    assert isinstance(out, nib.Nifti2Image)
    np.testing.assert_array_equal(out.affine, src.affine)
    np.testing.assert_array_equal(np.asarray(out.dataobj), mask)


@pytest.mark.parametrize("shape", [(30, 26), (30, 26, 3, 1)])
def test_save_nifti_keeps_2d_and_singleton_4d_shapes(tmp_path: Path, shape: tuple[int, ...]) -> None:
    path, mask = oblique_input(tmp_path, True, "both", shape=(30, 26, 3), seed=8)
    img = nib.load(path)
    data = np.asarray(img.dataobj)[:, :, 1] if len(shape) == 2 else np.asarray(img.dataobj)[..., None]
    mask = mask[:, :, 1] if len(shape) == 2 else mask[..., None]
    nib.save(nib.Nifti1Image(data, img.affine, header=img.header), tmp_path / "x.nii.gz")
    v = load_nifti(tmp_path / "x.nii.gz")
    save_nifti((v.pixels > 300).astype(np.uint8), v, tmp_path / "labels.nii.gz")
    out = nib.load(tmp_path / "labels.nii.gz")
    assert out.shape == shape
    np.testing.assert_array_equal(np.asarray(out.dataobj), mask)


def test_save_nifti_of_a_changed_grid_uses_the_volume_geometry(tmp_path: Path) -> None:
    """A volume derived from a NIfTI input on another grid (here: cropped) must not be written
    with the input's header: it gets its own right-handed geometry."""
    from dataclasses import replace

    path, _ = oblique_input(tmp_path, True, "qform")
    v = load_nifti(path)
    cropped = replace(v, pixels=v.pixels[:, 2:, :])  # same meta, other shape
    shifted = replace(v, positions=v.positions + 5.0 * v.row_direction)  # same shape, other grid
    for w in (cropped, shifted):
        labels = (w.pixels > 300).astype(np.uint8)
        save_nifti(labels, w, tmp_path / "w.nii.gz")
        out = nib.load(tmp_path / "w.nii.gz")
        assert np.linalg.det(out.affine[:3, :3]) > 0  # the volume's own order
        assert int(out.header["qform_code"]) == 1 and int(out.header["sform_code"]) == 1
        np.testing.assert_allclose(RAS_TO_LPS @ out.affine, w.affine_lps(), atol=1e-4)
        back = load_nifti(tmp_path / "w.nii.gz")
        np.testing.assert_array_equal(back.pixels, labels)
        np.testing.assert_allclose(back.positions, w.positions, atol=1e-4)


def test_save_nifti_of_a_non_nifti_volume_is_right_handed(tmp_path: Path) -> None:
    v = Volume(pixels=np.zeros((3, 6, 5), np.int16), pixel_spacing=(0.8, 0.7),
               row_direction=np.array([1.0, 0, 0]), column_direction=np.array([0, 0.6, 0.8]),
               positions=np.array([[0, 0, 0], [0, -8.0, 6.0], [0, -16.0, 12.0]]), slice_spacing=10.0)
    labels = np.zeros(v.shape, np.uint8)
    labels[1, 2, 3] = 4
    save_nifti(labels, v, tmp_path / "d.nii.gz")
    out = nib.load(tmp_path / "d.nii.gz")
    np.testing.assert_allclose(RAS_TO_LPS @ out.affine, v.affine_lps(), atol=1e-5)
    assert np.asarray(out.dataobj)[3, 2, 1] == 4  # (k, i, j) -> (j, i, k)


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


def test_myops_labels_written_on_the_input_grid(tmp_path: Path) -> None:
    """Oblique, left-handed, qform-only MyoPS volume: its ground truth, carried through a Volume
    on the LGE grid and written with save_nifti, is the ground-truth array voxel for voxel."""
    lge_path, gd_path = myops_dir() / "Case3001_LGE.nii.gz", myops_dir() / "Case3001_gd.nii.gz"
    if not (lge_path.is_file() and gd_path.is_file()):
        missing("data", f"MyoPS data not found at {lge_path.parent} (set LGENODE_DATA_DIR)")
    lge, gd = nib.load(lge_path), nib.load(gd_path)
    assert np.linalg.det(lge.affine[:3, :3]) < 0  # the case that used to come back flipped
    np.testing.assert_allclose(gd.affine, lge.affine, atol=1e-3)
    v, g = load_nifti(lge_path), load_nifti(gd_path)
    save_nifti(g.pixels.astype(np.uint16), v, tmp_path / "labels.nii.gz")
    out = nib.load(tmp_path / "labels.nii.gz")
    assert out.shape == lge.shape
    np.testing.assert_array_equal(out.affine, lge.affine)
    assert int(out.header["qform_code"]) == int(lge.header["qform_code"])
    assert int(out.header["sform_code"]) == int(lge.header["sform_code"])
    np.testing.assert_array_equal(np.asarray(out.dataobj), np.asarray(gd.dataobj))


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
