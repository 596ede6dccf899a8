"""Series completion, LGE selection through the real SCP, and the late-instance policy."""

from __future__ import annotations

import subprocess
from datetime import timedelta
from pathlib import Path

from sqlalchemy import select

from node.db.models import Job, Series, utcnow
from node.series.completion import sweep
from tests.conftest import dcmtk_env, which_dcmtk


def send(port: int, files: list[Path]) -> None:
    r = subprocess.run([which_dcmtk("storescu"), "-aec", "LGENODE", "127.0.0.1", str(port), *map(str, files)],
                       capture_output=True, text=True, env=dcmtk_env(), timeout=120)
    assert r.returncode == 0, r.stderr


def later(seconds: float = 5):  # type: ignore[no-untyped-def]
    return utcnow() + timedelta(seconds=seconds)


def test_lge_selected_cine_ignored_one_job(scp, core, study_series) -> None:
    send(scp.port, sorted(study_series["lge"].glob("*.dcm")) + sorted(study_series["cine"].glob("*.dcm")))
    assert sweep(core.sessions, core.cfg, now=utcnow()) == []  # not idle yet (idle_seconds=1)
    queued = sweep(core.sessions, core.cfg, now=later())
    assert len(queued) == 1
    with core.sessions() as s:
        by_desc = {r.series_description: r for r in s.scalars(select(Series))}
        lge = next(r for d, r in by_desc.items() if "LGE" in d)
        cine = next(r for d, r in by_desc.items() if "CINE" in d)
        assert lge.state == "selected" and queued == [lge.series_uid]
        assert cine.state == "ignored" and "exclude pattern" in (cine.reason or "")
        jobs = list(s.scalars(select(Job)))
        assert [(j.series_uid, j.state, j.revision) for j in jobs] == [(lge.series_uid, "queued", 1)]
    # Sweeping again changes nothing (idempotent).
    assert sweep(core.sessions, core.cfg, now=later(10)) == []


def _resend_one_new(tmp_path: Path, files: list[Path]) -> Path:
    """A slice that arrives late: one more slice beyond the end of the stack, same spacing."""
    import numpy as np
    from pydicom import dcmread
    from pydicom.uid import generate_uid

    dss = [dcmread(f) for f in files]
    iop = np.array(dss[0].ImageOrientationPatient, dtype=float)
    normal = np.cross(iop[:3], iop[3:])
    dss.sort(key=lambda d: float(np.dot(normal, np.array(d.ImagePositionPatient, dtype=float))))
    p = [np.array(d.ImagePositionPatient, dtype=float) for d in dss]
    ds = dss[-1]
    ds.ImagePositionPatient = [f"{v:.6f}" for v in p[-1] + (p[-1] - p[-2])]
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    out = tmp_path / "late.dcm"
    ds.save_as(out)
    return out


def test_late_instance_reprocess_policy(scp, core, study_series, tmp_path: Path) -> None:
    files = sorted(study_series["lge"].glob("*.dcm"))
    send(scp.port, files)
    assert len(sweep(core.sessions, core.cfg, now=later())) == 1
    # A duplicate changes nothing.
    send(scp.port, files[:1])
    with core.sessions() as s:
        assert s.scalar(select(Series.state)) == "selected"
    # A new instance re-opens the series; the queued job of revision 1 is superseded.
    send(scp.port, [_resend_one_new(tmp_path, files)])
    with core.sessions() as s:
        series = s.scalar(select(Series))
        assert series.state == "receiving" and series.revision == 2 and series.n_instances == len(files) + 1
        assert s.scalar(select(Job.state).where(Job.revision == 1)) == "superseded"
    sweep(core.sessions, core.cfg, now=later())
    with core.sessions() as s:
        assert [(j.revision, j.state) for j in s.scalars(select(Job).order_by(Job.revision))] == [
            (1, "superseded"), (2, "queued")]


def test_late_instance_store_only_policy(node_config, study_series, tmp_path: Path) -> None:
    from node.core import build_core
    from node.receive.scp import StorageSCP

    cfg = node_config(series={"late_instance_policy": "store_only"})
    core = build_core(cfg)
    server = StorageSCP(cfg.dicom, core.store)
    server.start()
    try:
        files = sorted(study_series["lge"].glob("*.dcm"))
        send(server.port, files)
        sweep(core.sessions, core.cfg, now=later())
        send(server.port, [_resend_one_new(tmp_path, files)])
        sweep(core.sessions, core.cfg, now=later(10))
        with core.sessions() as s:
            series = s.scalar(select(Series))
            assert series.state == "selected" and series.revision == 1 and series.n_instances == len(files) + 1
            assert [(j.revision, j.state) for j in s.scalars(select(Job))] == [(1, "queued")]
    finally:
        server.stop()
