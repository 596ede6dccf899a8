"""The job's first stage: the geometry it records equals the written one (synthetic study; in the
real-data tier, a MyoPS-derived series whose geometry must equal the NIfTI affine)."""

from __future__ import annotations

import subprocess
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import select

from node.db.models import Job, utcnow
from node.job.queue import JobQueue
from node.job.worker import Worker
from node.series.completion import sweep
from tests.conftest import dcmtk_env, myops_dir, needs_myops, which_dcmtk


def _send(port: int, files: list[Path]) -> None:
    r = subprocess.run([which_dcmtk("storescu"), "-aec", "LGENODE", "127.0.0.1", str(port), *map(str, files)],
                       capture_output=True, text=True, env=dcmtk_env(), timeout=120)
    assert r.returncode == 0, r.stderr


@pytest.fixture(scope="module")
def native_series(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Case3001 at its native matrix (no resampling), so the geometry must equal the NIfTI affine."""
    from pipeline.datasets.dicomize import dicomize_case

    out = tmp_path_factory.mktemp("native")
    dicomize_case(str(myops_dir() / "Case3001_LGE.nii.gz"), out, seed=7, with_cine=False)
    return out / "LGE_SAX"


@needs_myops
def test_load_stage_geometry_matches_nifti(scp, core, native_series: Path) -> None:
    import nibabel as nib

    files = sorted(native_series.glob("*.dcm"))
    r = subprocess.run([which_dcmtk("storescu"), "-aec", "LGENODE", "127.0.0.1", str(scp.port), *map(str, files)],
                       capture_output=True, text=True, env=dcmtk_env(), timeout=120)
    assert r.returncode == 0, r.stderr
    assert len(sweep(core.sessions, core.cfg, now=utcnow() + timedelta(seconds=5))) == 1
    worker = Worker(JobQueue(core.sessions), core.sessions, core.files.root)
    assert worker.run_once()
    with core.sessions() as s:
        job = s.scalar(select(Job))
    assert job.state == "done", job.reason
    geo = job.result["geometry"]

    img = nib.load(myops_dir() / "Case3001_LGE.nii.gz")
    aff = img.affine.copy()
    lps = np.diag([-1.0, -1.0, 1.0]) @ aff[:3, :3]  # RAS -> LPS
    # Voxel centres of the NIfTI grid, in LPS mm.
    nx, ny, nz = img.shape[:3]
    corners = np.array([[i, j, k] for i in (0, nx - 1) for j in (0, ny - 1) for k in (0, nz - 1)], dtype=float)
    nifti_pts = (lps @ corners.T).T + np.array([-aff[0, 3], -aff[1, 3], aff[2, 3]])

    rows, cols = geo["shape"][1], geo["shape"][2]
    rd, cd = np.array(geo["row_direction"]), np.array(geo["column_direction"])
    rsp, csp = geo["pixel_spacing_mm"]
    pos = np.array(geo["slice_positions_mm"])
    ours = np.array([p + j * csp * rd + i * rsp * cd for p in pos for i in (0, rows - 1) for j in (0, cols - 1)])
    # Same set of corner points (the axis order may differ between the two conventions).
    for pt in nifti_pts:
        assert np.min(np.linalg.norm(ours - pt, axis=1)) < 1e-3
    assert geo["shape"][0] == nz
    assert geo["slice_spacing_mm"] == pytest.approx(float(np.linalg.norm(aff[:3, 2])), abs=1e-3)
    assert sorted([rsp, csp]) == pytest.approx(sorted(np.linalg.norm(aff[:3, :2], axis=0)), abs=1e-4)
    assert job.result["timings_s"]["load"] > 0


def test_failed_load_records_reason(core) -> None:
    from node.db.models import Series

    with core.sessions.begin() as s:
        s.add(Series(series_uid="1.2.9", study_uid="1.2", state="selected"))
        s.flush()
        s.add(Job(series_uid="1.2.9", study_uid="1.2", next_attempt_at=utcnow() - timedelta(seconds=1)))
    worker = Worker(JobQueue(core.sessions), core.sessions, core.files.root)
    assert worker.run_once()
    with core.sessions() as s:
        job = s.scalar(select(Job))
    assert job.state == "failed" and "no stored image instances" in job.reason and job.stage == "load"


def test_load_stage_geometry_matches_the_written_volume(scp, core, tmp_path: Path) -> None:
    from dicomstudy.synthetic import write_synthetic_study

    study = write_synthetic_study(tmp_path, seed=4, with_cine=False)
    _send(scp.port, study.lge_files)
    assert len(sweep(core.sessions, core.cfg, now=utcnow() + timedelta(seconds=5))) == 1
    assert Worker(JobQueue(core.sessions), core.sessions, core.files.root).run_once()
    with core.sessions() as s:
        job = s.scalar(select(Job))
    assert job.state == "done", job.reason
    geo, vol = job.result["geometry"], study.lge_volume
    assert geo["shape"] == list(vol.shape)
    np.testing.assert_allclose(geo["slice_positions_mm"], vol.positions, atol=1e-3)
    np.testing.assert_allclose(geo["row_direction"], vol.row_direction, atol=1e-6)
    np.testing.assert_allclose(geo["column_direction"], vol.column_direction, atol=1e-6)
    assert geo["pixel_spacing_mm"] == pytest.approx(list(vol.pixel_spacing), abs=1e-6)
    assert geo["slice_spacing_mm"] == pytest.approx(vol.slice_spacing, abs=1e-3)
    assert job.result["n_files"] == vol.shape[0]


def test_enhanced_multiframe_series_through_scp_and_load(scp, core, tmp_path: Path) -> None:
    from dicomstudy.synthetic import Phantom, write_synthetic_study

    study = write_synthetic_study(tmp_path, seed=5, with_cine=False, enhanced=True,
                                  phantom=Phantom(slices=6, rows=160, cols=176))
    files = study.lge_files
    assert len(files) == 1  # one multi-frame instance
    r = subprocess.run([which_dcmtk("storescu"), "-aec", "LGENODE", "127.0.0.1", str(scp.port), *map(str, files)],
                       capture_output=True, text=True, env=dcmtk_env(), timeout=120)
    assert r.returncode == 0, r.stderr
    assert len(sweep(core.sessions, core.cfg, now=utcnow() + timedelta(seconds=5))) == 1
    assert Worker(JobQueue(core.sessions), core.sessions, core.files.root).run_once()
    with core.sessions() as s:
        job = s.scalar(select(Job))
    assert job.state == "done", job.reason
    assert job.result["geometry"]["shape"] == [6, 160, 176]
