"""The synthetic LGE study: valid DICOM, geometry and labels as written, LGE contrast, reproducible."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pydicom
import pytest

from dicomstudy.synthetic import (
    CAVITY,
    INFARCT,
    MVO,
    MYOCARDIUM,
    Phantom,
    synthetic_volume,
    write_synthetic_long_series,
    write_synthetic_study,
)
from models.io import load_dicom_series
from tests.support.dicom_tools import dciodvfy_errors, needs_dciodvfy


@pytest.fixture(scope="module")
def study(tmp_path_factory):  # type: ignore[no-untyped-def]
    return write_synthetic_study(tmp_path_factory.mktemp("synthetic"), seed=2)


def test_one_study_two_series_one_frame_of_reference(study) -> None:  # type: ignore[no-untyped-def]
    lge = pydicom.dcmread(study.lge_files[0], stop_before_pixels=True)
    cine = pydicom.dcmread(study.cine_files[0], stop_before_pixels=True)
    assert lge.StudyInstanceUID == cine.StudyInstanceUID
    assert lge.FrameOfReferenceUID == cine.FrameOfReferenceUID
    assert lge.SeriesInstanceUID != cine.SeriesInstanceUID
    assert "LGE" in lge.SeriesDescription and "CINE" in cine.SeriesDescription
    assert lge.PatientID == "SYNTH-PHANTOM2" and lge.PatientIdentityRemoved == "YES"
    uids = {str(pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID) for f in study.lge_files + study.cine_files}
    assert len(uids) == len(study.lge_files) + len(study.cine_files)


def test_read_back_as_written(study) -> None:  # type: ignore[no-untyped-def]
    vol = load_dicom_series(study.lge_dir)
    want = study.lge_volume
    assert vol.shape == want.shape == study.labels.shape
    np.testing.assert_array_equal(vol.pixels, want.pixels)
    np.testing.assert_allclose(vol.positions, want.positions, atol=1e-3)
    np.testing.assert_allclose(vol.row_direction, want.row_direction, atol=1e-6)
    # A double-oblique plane, not an axis-aligned one.
    assert np.all(np.abs(vol.normal) > 0.2)
    assert vol.slice_spacing == pytest.approx(Phantom().slice_spacing, abs=1e-3)


def test_anatomy_and_lge_contrast(study) -> None:  # type: ignore[no-untyped-def]
    labels, img = study.labels, study.lge_volume.pixels.astype(float)
    ps = study.lge_volume.pixel_spacing[0]
    for k in range(labels.shape[0]):
        # Every slice has a cavity inside a myocardial ring.
        assert (labels[k] == CAVITY).any() and (labels[k] >= MYOCARDIUM).any()
    basal_cavity_mm2 = (labels[0] == CAVITY).sum() * ps * ps
    apical_cavity_mm2 = (labels[-1] == CAVITY).sum() * ps * ps
    assert 1200 < basal_cavity_mm2 < 2600 and apical_cavity_mm2 < basal_cavity_mm2 / 3
    assert (labels == INFARCT).sum() > 300 and (labels == MVO).sum() > 50
    mean = {c: img[labels == c].mean() for c in (CAVITY, MYOCARDIUM, INFARCT, MVO)}
    # Inversion recovery: normal myocardium nulled, infarct brighter than blood, MVO dark.
    assert mean[MYOCARDIUM] < mean[CAVITY] < mean[INFARCT]
    assert mean[MVO] < mean[CAVITY] and mean[MVO] < mean[INFARCT] / 2


def test_cine_has_no_enhancement(study) -> None:  # type: ignore[no-untyped-def]
    cine = study.cine_volume.pixels.astype(float)
    labels = study.labels
    scar, normal = cine[np.isin(labels, (INFARCT, MVO))], cine[labels == MYOCARDIUM]
    assert abs(scar.mean() - normal.mean()) < 0.25 * normal.mean()


def test_same_seed_same_bytes(tmp_path: Path) -> None:
    def digest(root: Path) -> list[str]:
        return [hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*.dcm"))]

    ph = Phantom(slices=3, rows=64, cols=64, pixel_spacing=4.0)
    write_synthetic_study(tmp_path / "a", seed=5, phantom=ph)
    write_synthetic_study(tmp_path / "b", seed=5, phantom=ph)
    write_synthetic_study(tmp_path / "c", seed=6, phantom=ph)
    assert digest(tmp_path / "a") == digest(tmp_path / "b") != digest(tmp_path / "c")


def test_enhanced_study_reads_back(tmp_path: Path) -> None:
    study = write_synthetic_study(tmp_path, seed=3, enhanced=True, with_cine=False,
                                  phantom=Phantom(slices=4, rows=96, cols=80, pixel_spacing=3.0))
    assert len(study.lge_files) == 1
    vol = load_dicom_series(study.lge_dir)
    np.testing.assert_array_equal(vol.pixels, study.lge_volume.pixels)


def test_long_series_is_one_stack(tmp_path: Path) -> None:
    files = write_synthetic_long_series(25, tmp_path, rows=64, cols=64)
    vol = load_dicom_series(files)
    assert vol.shape == (25, 64, 64) and vol.slice_spacing == pytest.approx(1.0, abs=1e-3)


@needs_dciodvfy
def test_files_pass_dciodvfy(study, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    enhanced = write_synthetic_study(tmp_path, seed=3, enhanced=True,
                                     phantom=Phantom(slices=3, rows=64, cols=64, pixel_spacing=4.0))
    files = [study.lge_files[0], study.cine_files[0], *enhanced.lge_files, *enhanced.cine_files]
    assert {f.name: dciodvfy_errors(f) for f in files} == {f.name: [] for f in files}


def test_volume_only_api() -> None:
    vol, labels = synthetic_volume(Phantom(slices=2, rows=48, cols=48, pixel_spacing=5.0), seed=1)
    assert vol.pixels.dtype == np.uint16 and labels.dtype == np.uint8 and vol.shape == labels.shape
