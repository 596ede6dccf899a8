"""Every command answers --help; listing commands show what happened and why."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from lgenode.cli import app

LGENODE = str(Path(sys.executable).with_name("lgenode"))
runner = CliRunner()


def _commands(group, prefix=()):  # type: ignore[no-untyped-def]
    import typer.main

    click_group = typer.main.get_command(group)

    def walk(cmd, path):  # type: ignore[no-untyped-def]
        yield path
        for name, sub in getattr(cmd, "commands", {}).items():
            yield from walk(sub, (*path, name))

    yield from walk(click_group, prefix)


def test_help_on_every_command() -> None:
    paths = list(_commands(app))
    assert ("serve",) in paths and ("send",) in paths and ("jobs",) in paths and ("series",) in paths
    for path in paths:
        r = runner.invoke(app, [*path, "--help"])
        assert r.exit_code == 0, (path, r.output)
        assert "Usage" in r.output


def test_help_is_fast_and_does_not_import_tensorflow() -> None:
    code = "import sys, lgenode.cli; print('tensorflow' in sys.modules, 'keras' in sys.modules)"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.stdout.split() == ["False", "False"]


def test_jobs_and_series_listing(core, tmp_path: Path) -> None:
    from node.db.models import Job, Series, utcnow

    with core.sessions.begin() as s:
        s.add(Series(series_uid="1.2.3.4", study_uid="1.2.3", state="ignored", reason="modality CT not in ['MR']",
                     series_description="CT chest", modality="CT"))
        s.add(Series(series_uid="1.2.3.5", study_uid="1.2.3", state="selected", reason="LGE series, 8 slices",
                     series_description="LGE PSIR", modality="MR"))
        s.flush()
        job = Job(series_uid="1.2.3.5", study_uid="1.2.3", state="failed", reason="load: uneven spacing",
                  next_attempt_at=utcnow())
        s.add(job)
        s.flush()
        from node.db.models import Review

        s.add(Review(job_id=job.id, decision="rejected", reviewer="Doe^Jane"))
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"dicom: {{allow_any_peer: true}}\ndatabase: {{url: '{core.cfg.database_url}'}}\n"
                   f"storage: {{root: '{core.files.root}'}}\n")
    r = runner.invoke(app, ["series", "--config", str(cfg)])
    assert r.exit_code == 0 and "modality CT not in" in r.output and "LGE series, 8 slices" in r.output
    r = runner.invoke(app, ["jobs", "--config", str(cfg), "--json"])
    rows = json.loads(r.output)
    assert rows[0]["state"] == "failed" and rows[0]["reason"] == "load: uneven spacing"
    assert rows[0]["review"] == "rejected by Doe^Jane"
    r = runner.invoke(app, ["jobs", "--config", str(cfg)])
    assert "rejected by Doe^Jane" in r.output
    r = runner.invoke(app, ["series", "--config", str(cfg), "--state", "ignored", "--json"])
    assert [x["series_uid"] for x in json.loads(r.output)] == ["1.2.3.4"]


@pytest.mark.usefixtures("scp")
def test_send_and_echo_commands(scp, core) -> None:
    from pydicom.data import get_testdata_file

    r = subprocess.run([LGENODE, "echo", "--port", str(scp.port)], capture_output=True, text=True)
    assert r.returncode == 0 and "Success" in r.stdout
    r = subprocess.run([LGENODE, "send", "--port", str(scp.port), get_testdata_file("MR_small.dcm")],
                       capture_output=True, text=True)
    assert r.returncode == 0 and "sent 1/1 ok" in r.stdout, r.stderr
    r = subprocess.run([LGENODE, "send", "--port", str(scp.port), "--aet", "NOBODY", get_testdata_file("MR_small.dcm")],
                       capture_output=True, text=True)
    assert r.returncode == 1 and "association rejected" in r.stderr


def test_echo_and_send_say_what_went_wrong(scp) -> None:
    """D7: a closed port and an AE rejection were both "association rejected or peer unreachable"."""
    from pydicom.data import get_testdata_file

    from tests.conftest import free_port

    closed = free_port()
    r = subprocess.run([LGENODE, "echo", "--port", str(closed)], capture_output=True, text=True)
    assert r.returncode == 1 and f"cannot connect to 127.0.0.1:{closed}: connection refused" in r.stderr
    r = subprocess.run([LGENODE, "echo", "--port", str(scp.port), "--aet", "NOBODY"], capture_output=True, text=True)
    assert r.returncode == 1 and "association rejected" in r.stderr and "Calling AE title not recognised" in r.stderr
    r = subprocess.run([LGENODE, "echo", "--port", str(scp.port), "--aec", "OTHER"], capture_output=True, text=True)
    assert r.returncode == 1 and "Called AE title not recognised" in r.stderr
    r = subprocess.run([LGENODE, "send", "--port", str(closed), get_testdata_file("MR_small.dcm")],
                       capture_output=True, text=True)
    assert r.returncode == 1 and "connection refused" in r.stderr


def test_request_queues_an_inference_request_in_the_database(core, tmp_path: Path) -> None:
    from node.db.models import InferenceRequest

    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"dicom: {{allow_any_peer: true}}\ndatabase: {{url: '{core.cfg.database_url}'}}\n"
                   f"storage: {{root: '{core.files.root}'}}\n"
                   "sources: [{type: dicomweb, name: pacs, url: 'http://127.0.0.1:9/dicom-web'}]\n")
    study = "1.2.826.0.1.3680043.8.498.77"
    r = runner.invoke(app, ["request", "--config", str(cfg), "--study", study, "--source", "other"])
    assert r.exit_code == 2 and "unknown source 'other' (configured: ['pacs'])" in r.output
    r = runner.invoke(app, ["request", "--config", str(cfg), "--study", "1.2.x", "--source", "pacs"])
    assert r.exit_code == 2 and "not a valid DICOM UID" in r.output
    r = runner.invoke(app, ["request", "--config", str(cfg), "--study", study, "--source", "pacs",
                            "--series", study + ".1", "--priority", "3", "--json"])
    assert r.exit_code == 0, r.output
    rec = json.loads(r.stdout)
    assert rec["state"] == "queued" and rec["series_uids"] == [study + ".1"] and rec["priority"] == 3
    assert rec["principal"].startswith("cli:")
    with core.sessions() as s:
        assert s.get(InferenceRequest, rec["id"]).study_uid == study
    # --wait gives up after --timeout when no node serves the request (exit 3).
    r = runner.invoke(app, ["request", "--config", str(cfg), "--study", study, "--source", "pacs",
                            "--wait", "--timeout", "0.5"])
    assert r.exit_code == 3 and "still queued" in r.output


def test_nodes_listing(core, tmp_path: Path) -> None:
    from node.cluster.nodes import announce
    from node.db.models import Delivery, Instance, Job, Series, utcnow

    announce(core.sessions, "node-a", "http://10.0.0.1:8080/dicom-web", starting=True)
    announce(core.sessions, "node-b", "http://10.0.0.2:8080/dicom-web", starting=True)
    with core.sessions.begin() as s:
        for i, owner in enumerate(("node-a", "node-a", "node-b", None)):
            s.add(Instance(sop_instance_uid=f"1.2.3.{i}", sop_class_uid="1.2.840.10008.5.1.4.1.1.4", study_uid="1.2",
                           series_uid="1.2.3", transfer_syntax_uid="1.2.840.10008.1.2.1", path=f"x{i}", size_bytes=1,
                           attrs={}, node=owner))
        s.add(Series(series_uid="1.2.3", study_uid="1.2", state="selected"))
        s.flush()
        job = Job(series_uid="1.2.3", study_uid="1.2", state="done", next_attempt_at=utcnow())
        s.add(job)
        s.flush()
        for i, (owner, state) in enumerate((("node-b", "pending"), ("node-b", "delivered"), ("node-a", "failed"))):
            s.add(Delivery(job_id=job.id, destination="pacs", kind="seg", sop_instance_uid=f"1.2.9.{i}",
                           sop_class_uid="1.2", path="x", state=state, next_attempt_at=utcnow(), node=owner))
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"dicom: {{allow_any_peer: true}}\ndatabase: {{url: '{core.cfg.database_url}'}}\n"
                   f"storage: {{root: '{core.files.root}'}}\n")
    r = runner.invoke(app, ["nodes", "--config", str(cfg), "--json"])
    assert r.exit_code == 0, r.output
    rows = json.loads(r.output)
    assert [(x["name"], x["url"], x["instances"], x["pending_deliveries"]) for x in rows] == [
        ("node-a", "http://10.0.0.1:8080/dicom-web", 2, 0), ("node-b", "http://10.0.0.2:8080/dicom-web", 1, 1)]
    assert all(0 <= x["heartbeat_s_ago"] < 60 for x in rows)
    r = runner.invoke(app, ["nodes", "--config", str(cfg)])
    assert r.exit_code == 0 and "heartbeat_s_ago" in r.output and "node-b" in r.output


def test_rerun_a_failed_job_and_its_failed_deliveries(core, tmp_path: Path) -> None:
    from node.db.models import Delivery, Job, Series, utcnow

    with core.sessions.begin() as s:
        s.add(Series(series_uid="1.2.3.5", study_uid="1.2.3", state="selected"))
        s.flush()
        failed = Job(series_uid="1.2.3.5", study_uid="1.2.3", state="failed", attempts=3,
                     reason="load: uneven spacing", next_attempt_at=utcnow())
        s.add(failed)
        s.flush()
        s.add(Delivery(job_id=failed.id, destination="pacs", kind="sr", sop_instance_uid="1.2.9.1",
                       sop_class_uid="1.2.840.10008.5.1.4.1.1.88.34", path="a/b/c.dcm", state="failed",
                       attempts=5, last_error="connection refused", next_attempt_at=utcnow()))
        jid = failed.id
    audit = tmp_path / "audit.jsonl"
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"dicom: {{allow_any_peer: true}}\ndatabase: {{url: '{core.cfg.database_url}'}}\n"
                   f"storage: {{root: '{core.files.root}'}}\naudit: {{enabled: true, path: '{audit}'}}\n")
    r = runner.invoke(app, ["rerun", str(jid), "--config", str(cfg)])
    assert r.exit_code == 0, r.output
    assert f"job {jid} queued again (re-run by cli:" in r.output
    r = runner.invoke(app, ["rerun", str(jid), "--config", str(cfg)])
    assert r.exit_code == 1 and "is queued: only a failed job is run again" in r.output
    r = runner.invoke(app, ["rerun", str(jid), "--deliveries", "--destination", "archive", "--config", str(cfg)])
    assert r.exit_code == 1 and "no failed deliveries to 'archive'" in r.output
    r = runner.invoke(app, ["rerun", "--deliveries", "--all", "--destination", "pacs", "--config", str(cfg)])
    assert r.exit_code == 0 and "1 job(s): 1 failed deliveries back in the outbox (sr to pacs)" in r.output
    assert runner.invoke(app, ["rerun", "--config", str(cfg)]).exit_code == 2  # neither JOB nor --all
    assert runner.invoke(app, ["rerun", str(jid), "--all", "--deliveries", "--config", str(cfg)]).exit_code == 2
    assert runner.invoke(app, ["rerun", "999", "--config", str(cfg)]).exit_code == 1
    with core.sessions() as s:
        assert s.get(Job, jid).state == "queued"
        assert s.query(Delivery).one().state == "pending"
    recs = [json.loads(line) for line in audit.read_text().splitlines()]
    actions = [r["ParticipantObjectIdentification"][0]["ParticipantObjectDetail"]["action"] for r in recs]
    assert actions == ["rerun", "resend"] and recs[0]["ActiveParticipant"][0]["UserID"].startswith("cli:")
    assert recs[1]["ParticipantObjectIdentification"][0]["ParticipantObjectID"] == str(jid)
