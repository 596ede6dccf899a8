"""MyoPS NIfTI -> DICOM MR series: geometry round trip, enhanced variant, dciodvfy, benchmark, CLI."""

from __future__ import annotations

import random
import subprocess
from pathlib import Path

import numpy as np
import pydicom
import pytest
import typer
from typer.testing import CliRunner

from models.io import load_dicom_series, load_nifti
from models.volume import Volume
from pipeline.datasets.dicomize import (
    StudyContext,
    dicomize_case,
    make_benchmark_series,
    resample_inplane,
    write_enhanced_series,
    write_series,
)
from pipeline.datasets.paths import myops_dir
from tests.support.require import missing, requires

DCIODVFY = Path("/usr/bin/dciodvfy")
CASE = "Case3001"


def myops_lge(case: str = CASE) -> Path:
    path = myops_dir() / f"{case}_LGE.nii.gz"
    if not path.is_file():
        missing("data", f"MyoPS data not found at {path} (set LGENODE_DATA_DIR)")
    return path


def assert_geometry_equal(got: Volume, want: Volume, tol_mm: float = 1e-3) -> None:
    assert got.shape == want.shape
    np.testing.assert_allclose(got.affine_lps(), want.affine_lps(), atol=tol_mm)
    np.testing.assert_allclose(got.positions, want.positions, atol=tol_mm)


def linear_volume(n: int = 3, rows: int = 90, cols: int = 70) -> tuple[Volume, np.ndarray, float]:
    """Pixel value = a . (LPS position) + b, so any resampling can be checked against geometry."""
    rng = np.random.default_rng(11)
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    row_dir, col_dir = q[:, 0], q[:, 1]
    vol = Volume(
        pixels=np.zeros((n, rows, cols), np.float32),
        pixel_spacing=(0.74, 0.74),
        row_direction=row_dir,
        column_direction=col_dir,
        positions=np.array([10.0, -20.0, 30.0]) + np.outer(np.arange(n) * 10.0, np.cross(row_dir, col_dir)),
        slice_spacing=10.0,
    )
    a, b = np.array([3.0, -2.0, 1.5]), 500.0
    k, i, j = np.meshgrid(np.arange(n), np.arange(rows), np.arange(cols), indexing="ij")
    world = (vol.positions[k] + (j * 0.74)[..., None] * row_dir + (i * 0.74)[..., None] * col_dir)
    vol.pixels = (world @ a + b).astype(np.float32)
    return vol, a, b


def test_resample_inplane_keeps_geometry_exact() -> None:
    vol, a, b = linear_volume()
    out = resample_inplane(vol, 32, 32)
    assert out.shape == (3, 32, 32)
    size = min(90 * 0.74 / 32, 70 * 0.74 / 32)
    assert out.pixel_spacing == pytest.approx((size, size))
    # Every new pixel holds the value of the linear field at its own world position.
    k, i, j = np.meshgrid(np.arange(3), np.arange(32), np.arange(32), indexing="ij")
    world = (out.positions[k] + (j * size)[..., None] * out.row_direction
             + (i * size)[..., None] * out.column_direction)
    np.testing.assert_allclose(out.pixels, world @ a + b, atol=0.05)
    # The field of view stays centred.
    centre_in = vol.positions[0] + (69 / 2 * 0.74) * vol.row_direction + (89 / 2 * 0.74) * vol.column_direction
    centre_out = out.positions[0] + (31 / 2 * size) * (out.row_direction + out.column_direction)
    np.testing.assert_allclose(centre_out, centre_in, atol=1e-6)


def test_synthetic_volume_roundtrip_without_shared_data(tmp_path: Path) -> None:
    vol, _, _ = linear_volume()
    vol.pixels = np.rint(vol.pixels).astype(np.int16)
    files = write_series(vol, tmp_path / "s", StudyContext("SYN", seed=1))
    got = load_dicom_series(files)
    assert_geometry_equal(got, vol)
    np.testing.assert_array_equal(got.pixels, vol.pixels)


def test_myops_roundtrip_classic_and_cine(tmp_path: Path) -> None:
    lge = myops_lge()
    ref = load_nifti(lge)
    result = dicomize_case(lge, tmp_path, seed=5)
    files = list(result.lge_files)
    random.Random(0).shuffle(files)
    got = load_dicom_series(files)
    assert_geometry_equal(got, ref)
    np.testing.assert_array_equal(got.pixels, ref.pixels)
    assert got.meta["SeriesDescription"] == "LGE PSIR SAX"

    cine_ref = load_nifti(lge.with_name(lge.name.replace("_LGE", "_C0")))
    cine = load_dicom_series(tmp_path / "CINE_SAX")
    assert_geometry_equal(cine, cine_ref)
    np.testing.assert_array_equal(cine.pixels, cine_ref.pixels)
    assert cine.meta["SeriesDescription"] == "CINE SAX"
    assert cine.meta["StudyInstanceUID"] == got.meta["StudyInstanceUID"]
    assert cine.meta["FrameOfReferenceUID"] == got.meta["FrameOfReferenceUID"]
    assert cine.meta["SeriesInstanceUID"] != got.meta["SeriesInstanceUID"]

    ds = pydicom.dcmread(result.lge_files[0])
    assert ds.file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian
    assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.4"
    assert list(ds.ImageType)[:2] == ["ORIGINAL", "PRIMARY"]
    assert ds.PatientID == f"MYOPS-{CASE}" and ds.PatientBirthDate == ""


def test_myops_enhanced_loads_to_the_same_volume_as_classic(tmp_path: Path) -> None:
    lge = myops_lge("Case3004")
    classic = dicomize_case(lge, tmp_path / "c", seed=2, matrix=128, with_cine=False)
    enhanced = dicomize_case(lge, tmp_path / "e", seed=2, matrix=128, with_cine=False, enhanced=True)
    assert len(enhanced.lge_files) == 1
    a = load_dicom_series(classic.lge_files)
    b = load_dicom_series(enhanced.lge_files)
    assert a.shape == b.shape == (load_nifti(lge).shape[0], 128, 128)
    assert_geometry_equal(b, a)
    np.testing.assert_array_equal(b.pixels, a.pixels)
    assert_geometry_equal(a, classic.lge_volume)  # the volume the writer reports is what it wrote


def test_seed_makes_files_reproducible(tmp_path: Path) -> None:
    vol, _, _ = linear_volume(n=2, rows=16, cols=16)
    vol.pixels = np.rint(vol.pixels).astype(np.int16)
    a = write_series(vol, tmp_path / "a", StudyContext("SYN", seed=9))
    b = write_series(vol, tmp_path / "b", StudyContext("SYN", seed=9))
    c = write_series(vol, tmp_path / "c", StudyContext("SYN", seed=10))
    assert [p.read_bytes() for p in a] == [p.read_bytes() for p in b]
    uids = lambda files: {pydicom.dcmread(p).SOPInstanceUID for p in files}  # noqa: E731
    assert not uids(a) & uids(c)
    assert all(pydicom.uid.UID(u).is_valid for u in uids(a) | uids(c))


def dciodvfy_errors(path: Path) -> list[str]:
    run = subprocess.run([str(DCIODVFY), str(path)], capture_output=True, text=True, timeout=60)
    return [ln for ln in (run.stdout + run.stderr).splitlines() if ln.startswith("Error")]


@requires("dicom3tools", "dciodvfy (dicom3tools) not installed")
def test_generated_files_pass_dciodvfy(tmp_path: Path) -> None:
    vol, _, _ = linear_volume(n=3, rows=24, cols=20)
    vol.pixels = np.rint(vol.pixels).astype(np.int16)  # negative values: signed pixels
    files = []
    for kind in ("lge", "cine"):
        ctx = StudyContext("SYN", seed=1)
        files += write_series(vol, tmp_path / f"{kind}-classic", ctx, kind)[:1]
        files += write_enhanced_series(vol, tmp_path / f"{kind}-enh", ctx, kind)
    try:
        lge = myops_lge()
        case = dicomize_case(lge, tmp_path / "myops", seed=1, matrix=64)
        files += case.lge_files[:1] + case.cine_files[:1]
        case = dicomize_case(lge, tmp_path / "myops-e", seed=1, matrix=64, enhanced=True)
        files += case.lge_files + case.cine_files
    except pytest.skip.Exception:
        pass
    problems = {p.relative_to(tmp_path).as_posix(): dciodvfy_errors(p) for p in files}
    assert {k: v for k, v in problems.items() if v} == {}


def test_dciodvfy_check_detects_a_broken_file(tmp_path: Path) -> None:
    if not DCIODVFY.exists():
        missing("dicom3tools", "dciodvfy (dicom3tools) not installed")
    vol, _, _ = linear_volume(n=1, rows=8, cols=8)
    vol.pixels = np.rint(vol.pixels).astype(np.int16)
    (path,) = write_series(vol, tmp_path, StudyContext("SYN", seed=1))
    ds = pydicom.dcmread(path)
    del ds.ImageOrientationPatient  # type 1 in Image Plane
    ds.save_as(path)
    assert dciodvfy_errors(path)


def test_benchmark_series_distinct_uids_and_loadable(tmp_path: Path) -> None:
    myops_lge()
    files = make_benchmark_series(n=24, rows=64, cols=64, out_dir=tmp_path, cases=["Case3001", "Case3002"])
    assert len(files) == 24
    datasets = [pydicom.dcmread(p) for p in files]
    assert len({d.SOPInstanceUID for d in datasets}) == 24
    assert len({d.SeriesInstanceUID for d in datasets}) == 1
    vol = load_dicom_series(files)
    assert vol.shape == (24, 64, 64)
    assert vol.slice_spacing == pytest.approx(1.0)
    # Real pixels: Case3001 (5 slices) then Case3002 (3 slices), cycling.
    first = resample_inplane(load_nifti(myops_dir() / "Case3001_LGE.nii.gz"), 64, 64)
    np.testing.assert_array_equal(vol.pixels[0], first.pixels[0])
    np.testing.assert_array_equal(vol.pixels[8], first.pixels[0])
    assert not np.array_equal(vol.pixels[5], vol.pixels[0])


def test_cli_to_dicom(tmp_path: Path) -> None:
    lge = myops_lge()
    from pipeline.cli import app as pipeline_app

    root = typer.Typer()
    root.add_typer(pipeline_app, name="pipeline")

    @root.callback()
    def _root() -> None:
        """Stand-in for the lgenode top-level app."""

    out = tmp_path / "out"
    res = CliRunner().invoke(
        root, ["pipeline", "to-dicom", str(lge), "--out", str(out), "--matrix", "96", "--seed", "4", "--no-cine"]
    )
    assert res.exit_code == 0, res.output
    vol = load_dicom_series(out / "LGE_SAX")
    assert vol.shape[1:] == (96, 96)
    assert not (out / "CINE_SAX").exists()
    res = CliRunner().invoke(root, ["pipeline", "to-dicom", "Case9999", "--out", str(out)])
    assert res.exit_code != 0
