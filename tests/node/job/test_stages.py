"""The stages of a segment job, run by a worker on the synthetic study: each hands its typed
output to the next, and a failure is recorded with the stage it happened in."""

from __future__ import annotations

import subprocess
from datetime import timedelta
from pathlib import Path

from sqlalchemy import select

from node.db.models import Instance, Job, utcnow
from node.deliver.outbox import Outbox
from node.job.handover import EncodedResults, JobRun
from node.job.queue import JobQueue
from node.job.stages import build_stages
from node.job.worker import Worker
from node.series.completion import sweep
from tests.conftest import dcmtk_env, which_dcmtk

RESULT_CLASSES = ("1.2.840.10008.5.1.4.1.1.66.4", "1.2.840.10008.5.1.4.1.1.88.34", "1.2.840.10008.5.1.4.1.1.104.1")


def _queue_synthetic_job(scp, core, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from dicomstudy.synthetic import write_synthetic_study

    study = write_synthetic_study(tmp_path / "study", seed=8, with_cine=False)
    r = subprocess.run([which_dcmtk("storescu"), "-aec", "LGENODE", "127.0.0.1", str(scp.port),
                        *map(str, study.lge_files)], capture_output=True, text=True, env=dcmtk_env(), timeout=120)
    assert r.returncode == 0, r.stderr
    assert len(sweep(core.sessions, core.cfg, now=utcnow() + timedelta(seconds=5))) == 1


def _run(core, stages) -> Job:  # type: ignore[no-untyped-def]
    worker = Worker(JobQueue(core.sessions), core.sessions, core.files.root, stages=stages, files=core.files)
    assert worker.run_once()
    with core.sessions() as s:
        job = s.scalar(select(Job))
        assert job is not None
        return job


def test_segment_job_runs_every_stage_and_stores_seg_sr_pdf(scp, core, tmp_path: Path) -> None:
    _queue_synthetic_job(scp, core, tmp_path)
    stages = build_stages(core.cfg, Outbox(core.sessions, core.files.root, core.cfg))
    assert [n for n, _ in stages["segment"]] == ["load", "segment", "encode", "deliver", "report", "deliver_report"]
    job = _run(core, stages)
    assert job.state == "done", job.reason
    assert set(job.result["timings_s"]) == {n for n, _ in stages["segment"]}
    assert [o["kind"] for o in job.result["objects"]] == ["seg", "sr", "pdf"]
    q = job.result["quality"]  # the model's confidence, also written into the SR and PDF
    assert 0.0 <= q["score"] <= 1.0 and q["members"] >= 1 and isinstance(q["needs_review"], bool)
    with core.sessions() as s:
        stored = set(s.scalars(select(Instance.sop_instance_uid).where(Instance.sop_class_uid.in_(RESULT_CLASSES))))
    assert stored == {o["sop_instance_uid"] for o in job.result["objects"]}


def test_report_failure_is_a_report_failure_not_a_delivery_one(scp, core, tmp_path: Path) -> None:
    _queue_synthetic_job(scp, core, tmp_path)
    stages = build_stages(core.cfg, Outbox(core.sessions, core.files.root, core.cfg))
    report = dict(stages["segment"])["report"]

    def broken_report(run: JobRun, encoded: EncodedResults) -> EncodedResults:
        report(run, encoded)  # the real report is made, then the stage fails (e.g. a full disk)
        raise OSError("No space left on device")

    stages["segment"] = [(n, broken_report if n == "report" else s) for n, s in stages["segment"]]
    job = _run(core, stages)
    assert job.stage == "report" and job.reason.startswith("report: OSError"), (job.stage, job.reason)
    assert job.state in ("queued", "failed")  # retried later, as any transient failure
    # SEG and SR were stored (and queued for delivery) before the report stage ran.
    assert [o["kind"] for o in job.result["objects"]][:2] == ["seg", "sr"]


def test_without_write_report_there_is_no_report_stage(node_config) -> None:  # type: ignore[no-untyped-def]
    from node.core import build_core

    core = build_core(node_config(model={"write_report": False}))
    try:
        stages = build_stages(core.cfg, Outbox(core.sessions, core.files.root, core.cfg))
        assert [n for n, _ in stages["segment"]] == ["load", "segment", "encode", "deliver"]
    finally:
        core.engine.dispose()
