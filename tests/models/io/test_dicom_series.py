"""load_dicom_series: geometry, sorting, enhanced multi-frame, and clear errors on bad stacks."""

from __future__ import annotations

import random
import time
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file

from models.io import GeometryError, load_dicom_series
from models.volume import Volume
from dicomstudy.write import StudyContext, write_enhanced_series, write_series


def oblique_volume(n: int = 6, rows: int = 40, cols: int = 48, seed: int = 0) -> Volume:
    """A stack with a genuinely oblique orientation and distinct integer pixels per slice."""
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    row_dir, col_dir = q[:, 0], q[:, 1]
    normal = np.cross(row_dir, col_dir)
    spacing = 8.5
    origin = np.array([-61.25, 102.5, 33.75])
    return Volume(
        pixels=rng.integers(0, 4000, size=(n, rows, cols)).astype(np.int16),
        pixel_spacing=(1.25, 1.4),
        row_direction=row_dir,
        column_direction=col_dir,
        positions=origin + np.outer(np.arange(n) * spacing, normal),
        slice_spacing=spacing,
        slice_thickness=8.0,
    )


@pytest.fixture
def vol() -> Volume:
    return oblique_volume()


@pytest.fixture
def series(tmp_path: Path, vol: Volume) -> list[Path]:
    return write_series(vol, tmp_path / "s", StudyContext("T1", seed=7))


def assert_same_volume(got: Volume, want: Volume, tol_mm: float = 1e-3) -> None:
    assert got.shape == want.shape
    np.testing.assert_allclose(got.positions, want.positions, atol=tol_mm)
    np.testing.assert_allclose(got.row_direction, want.row_direction, atol=1e-6)
    np.testing.assert_allclose(got.column_direction, want.column_direction, atol=1e-6)
    np.testing.assert_allclose(got.pixel_spacing, want.pixel_spacing, atol=1e-6)
    assert got.slice_spacing == pytest.approx(want.slice_spacing, abs=tol_mm)
    np.testing.assert_array_equal(got.pixels, want.pixels)


def edit(path: Path, **attrs: object) -> None:
    ds = pydicom.dcmread(path)
    for key, value in attrs.items():
        setattr(ds, key, value)
    ds.save_as(path)


def test_roundtrip_shuffled_files_sorted_along_normal(series: list[Path], vol: Volume) -> None:
    files = list(series)
    random.Random(3).shuffle(files)
    got = load_dicom_series(files)
    assert_same_volume(got, vol)
    assert got.pixels.dtype == np.float32
    sops = [pydicom.dcmread(p).SOPInstanceUID for p in series]
    assert [ref[0] for ref in got.source_refs] == sops
    assert all(ref[1] is None for ref in got.source_refs)
    assert got.meta["Modality"] == "MR"
    assert got.meta["SeriesDescription"] == "LGE PSIR SAX"
    assert got.slice_thickness == pytest.approx(8.0)


def test_folder_input_skips_non_dicom_and_non_image_objects(series: list[Path], vol: Volume) -> None:
    folder = series[0].parent
    (folder / "README.txt").write_text("not dicom")
    sr = pydicom.dcmread(series[0])
    del sr.PixelData
    sr.SOPInstanceUID = pydicom.uid.generate_uid()
    sr.save_as(folder / "no_pixels.dcm")
    assert_same_volume(load_dicom_series(folder), vol)


def test_enhanced_multiframe_loads_to_the_same_volume(tmp_path: Path, vol: Volume) -> None:
    (path,) = write_enhanced_series(vol, tmp_path / "e", StudyContext("T1", seed=7))
    got = load_dicom_series(path)
    assert_same_volume(got, vol)
    assert got.meta["SOPClassUID"] == "1.2.840.10008.5.1.4.1.1.4.1"
    sop = pydicom.dcmread(path).SOPInstanceUID
    assert got.source_refs == [(sop, k + 1) for k in range(vol.shape[0])]


def test_enhanced_frames_out_of_order_and_per_frame_rescale(tmp_path: Path, vol: Volume) -> None:
    (path,) = write_enhanced_series(vol, tmp_path / "e", StudyContext("T1", seed=7))
    ds = pydicom.dcmread(path)
    # Reverse the frames (pixels and per-frame groups together) and give frame 1 its own slope.
    n = vol.shape[0]
    frames = ds.pixel_array[::-1].copy()
    ds.PixelData = frames.tobytes()
    ds.PerFrameFunctionalGroupsSequence = pydicom.Sequence(list(ds.PerFrameFunctionalGroupsSequence)[::-1])
    pvt = pydicom.Dataset()
    pvt.RescaleSlope, pvt.RescaleIntercept, pvt.RescaleType = "2", "-100", "US"
    ds.PerFrameFunctionalGroupsSequence[0].PixelValueTransformationSequence = pydicom.Sequence([pvt])
    ds.save_as(path)
    got = load_dicom_series(path)
    expected = vol.pixels.astype(np.float32).copy()
    expected[n - 1] = expected[n - 1] * 2 - 100  # frame 1 now holds the last slice
    np.testing.assert_allclose(got.positions, vol.positions, atol=1e-3)
    np.testing.assert_array_equal(got.pixels, expected)
    assert got.source_refs[0][1] == n  # the first slice along the normal is frame n


def test_legacy_converted_enhanced_mr_from_highdicom(tmp_path: Path, vol: Volume) -> None:
    legacy = pytest.importorskip("highdicom.legacy")
    from dicomstudy.write import series_datasets

    frames = series_datasets(vol, StudyContext("T1", seed=7))
    random.Random(1).shuffle(frames)
    lce = legacy.LegacyConvertedEnhancedMRImage(
        frames, series_instance_uid=pydicom.uid.generate_uid(), series_number=3,
        sop_instance_uid=pydicom.uid.generate_uid(), instance_number=1,
    )
    lce.save_as(tmp_path / "lce.dcm")
    got = load_dicom_series(tmp_path / "lce.dcm")
    assert got.meta["SOPClassUID"] == "1.2.840.10008.5.1.4.1.1.4.4"
    assert_same_volume(got, vol)


def test_rescale_slope_intercept_applied(series: list[Path], vol: Volume) -> None:
    for p in series:
        edit(p, RescaleSlope="0.5", RescaleIntercept="-1024")
    got = load_dicom_series(series)
    np.testing.assert_allclose(got.pixels, vol.pixels * 0.5 - 1024)


def test_single_slice_pydicom_mr_small() -> None:
    got = load_dicom_series(get_testdata_file("MR_small.dcm"))
    ds = pydicom.dcmread(get_testdata_file("MR_small.dcm"))
    assert got.shape == (1, ds.Rows, ds.Columns)
    assert got.slice_spacing is None
    np.testing.assert_allclose(got.positions[0], [float(v) for v in ds.ImagePositionPatient])
    np.testing.assert_array_equal(got.pixels[0], ds.pixel_array)


def test_same_instance_twice_is_collapsed(tmp_path: Path, series: list[Path], vol: Volume) -> None:
    copy = tmp_path / "copy.dcm"
    copy.write_bytes(series[2].read_bytes())
    got = load_dicom_series([*series, copy])
    assert_same_volume(got, vol)
    assert got.meta["repeated_instances_dropped"] == 1


# ----------------------------------------------------------------------------- errors


def test_mixed_orientation_is_rejected(series: list[Path]) -> None:
    ds = pydicom.dcmread(series[3])
    iop = np.array([float(v) for v in ds.ImageOrientationPatient])
    angle = np.deg2rad(10)
    row, col = iop[:3], iop[3:]
    new_row = np.cos(angle) * row + np.sin(angle) * col
    new_col = -np.sin(angle) * row + np.cos(angle) * col
    edit(series[3], ImageOrientationPatient=[f"{v:.8f}" for v in (*new_row, *new_col)])
    with pytest.raises(GeometryError, match=r"not parallel.*10\.0 degrees"):
        load_dicom_series(series)


def test_mixed_series_is_rejected(series: list[Path]) -> None:
    edit(series[1], SeriesInstanceUID=pydicom.uid.generate_uid(), SeriesDescription="T2 STIR")
    with pytest.raises(GeometryError, match=r"2 different series.*T2 STIR"):
        load_dicom_series(series)


def test_inconsistent_pixel_spacing_is_rejected(series: list[Path]) -> None:
    edit(series[2], PixelSpacing=["1.5", "1.5"])
    with pytest.raises(GeometryError, match="different pixel spacing"):
        load_dicom_series(series)


def test_different_matrix_is_rejected(series: list[Path]) -> None:
    ds = pydicom.dcmread(series[0])
    ds.Rows, ds.Columns = ds.Columns, ds.Rows
    ds.save_as(series[0])
    with pytest.raises(GeometryError, match="different matrix sizes"):
        load_dicom_series(series)


def test_duplicate_positions_are_rejected_or_resolved_deterministically(
    tmp_path: Path, series: list[Path], vol: Volume
) -> None:
    # A second "inversion time" at the position of slice 3, with a higher instance number.
    dup = pydicom.dcmread(series[2])
    dup.SOPInstanceUID = pydicom.uid.generate_uid()
    dup.file_meta.MediaStorageSOPInstanceUID = dup.SOPInstanceUID
    dup.InstanceNumber = 99
    dup.InversionTime = "350"
    dup.PixelData = np.zeros_like(dup.pixel_array).tobytes()
    dup.save_as(tmp_path / "dup.dcm")
    files = [*series, tmp_path / "dup.dcm"]
    with pytest.raises(GeometryError, match="more than one image"):
        load_dicom_series(files)
    for order in (files, files[::-1]):
        got = load_dicom_series(order, duplicates="first")
        assert_same_volume(got, vol)  # the lower InstanceNumber wins, whatever the file order
        assert got.meta["duplicates_dropped"] == 1


def test_missing_slice_gives_non_uniform_spacing_error(series: list[Path]) -> None:
    with pytest.raises(GeometryError, match="spacing is not uniform.*missing"):
        load_dicom_series([p for k, p in enumerate(series) if k != 2])


def test_small_spacing_jitter_is_tolerated_and_recorded(series: list[Path], vol: Volume) -> None:
    ds = pydicom.dcmread(series[2])
    pos = np.array([float(v) for v in ds.ImagePositionPatient]) + 0.04 * vol.normal
    edit(series[2], ImagePositionPatient=[f"{v:.6f}" for v in pos])
    got = load_dicom_series(series)
    assert got.meta["slice_spacing_max_deviation_mm"] == pytest.approx(0.04, abs=2e-3)


def test_inplane_shift_is_rejected(series: list[Path], vol: Volume) -> None:
    ds = pydicom.dcmread(series[4])
    pos = np.array([float(v) for v in ds.ImagePositionPatient]) + 3.0 * vol.row_direction
    edit(series[4], ImagePositionPatient=[f"{v:.6f}" for v in pos])
    with pytest.raises(GeometryError, match=r"one line.*3\.00 mm"):
        load_dicom_series(series)


def test_missing_geometry_and_non_dicom_input(tmp_path: Path, series: list[Path]) -> None:
    ds = pydicom.dcmread(series[0])
    del ds.ImagePositionPatient
    ds.save_as(series[0])
    with pytest.raises(GeometryError, match="ImagePositionPatient"):
        load_dicom_series(series)
    junk = tmp_path / "junk.dcm"
    junk.write_bytes(b"not a dicom file")
    with pytest.raises(GeometryError, match="not a readable DICOM"):
        load_dicom_series([junk])
    with pytest.raises(GeometryError, match="does not exist"):
        load_dicom_series(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(GeometryError, match="no DICOM files"):
        load_dicom_series(tmp_path / "empty")


def test_twelve_slices_256_load_fast(tmp_path: Path) -> None:
    v = oblique_volume(n=12, rows=256, cols=256, seed=1)
    files = write_series(v, tmp_path / "fast", StudyContext("T2", seed=1))
    load_dicom_series(files)  # warm imports and the file cache
    best = min(_timed(lambda: load_dicom_series(files)) for _ in range(3))
    assert best < 0.1, f"12x256x256 took {best * 1000:.0f} ms"


def _timed(fn) -> float:  # type: ignore[no-untyped-def]
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t
