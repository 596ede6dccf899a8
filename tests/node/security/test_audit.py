"""The audit trail of the SCP and the outbox, with real peers (DCMTK), read back from the file."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from pydicom import dcmread
from pynetdicom import AE

from node.db.models import Job, Series, utcnow
from node.deliver.outbox import OutgoingObject, Outbox
from node.receive.scp import StorageSCP
from node.security.audit import QUERY, AuditLog
from tests.conftest import free_port
from tests.support.dicom_peers import PATIENT, dcmtk, mr_files, storescp

MR = "1.2.840.10008.5.1.4.1.1.4"


def read(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


@pytest.fixture
def audited_scp(core, tmp_path):  # type: ignore[no-untyped-def]
    server = StorageSCP(core.cfg.dicom, core.store, audit=AuditLog(tmp_path / "audit.jsonl"))
    server.start()
    yield server
    server.stop()


def wait_records(path: Path, code: str, n: int = 1) -> list[dict]:
    deadline = time.time() + 5
    while True:
        got = [r for r in read(path) if r["EventID"]["code"] == code]
        if len(got) >= n or time.time() > deadline:
            return got
        time.sleep(0.05)


def test_association_records_who_sent_what_and_refusals(audited_scp, tmp_path) -> None:
    files = mr_files(tmp_path / "in", 3)
    r = dcmtk("storescu", "-aet", "STORESCU", "-aec", "LGENODE", "127.0.0.1", str(audited_scp.port), *map(str, files))
    assert r.returncode == 0, r.stderr
    # The same again (duplicates) plus one instance with a UID that is not a UID, over pynetdicom.
    ae = AE(ae_title="TESTSCU")
    ae.add_requested_context(MR)
    assoc = ae.associate("127.0.0.1", audited_scp.port, ae_title="LGENODE")
    assert assoc.is_established
    assert assoc.send_c_store(dcmread(files[0])).Status == 0
    bad = dcmread(files[1])
    bad.SOPInstanceUID = "1.2.3.abc"
    status = assoc.send_c_store(bad).Status
    assoc.release()
    assert status != 0
    # An echo only is not a transfer: no record.
    assert dcmtk("echoscu", "-aet", "ECHOSCU", "-aec", "LGENODE", "127.0.0.1", str(audited_scp.port)).returncode == 0
    # Unknown AE title: a security alert.
    assert dcmtk("echoscu", "-aet", "INTRUDER", "-aec", "LGENODE", "127.0.0.1", str(audited_scp.port)).returncode != 0

    path = tmp_path / "audit.jsonl"
    first, second = wait_records(path, "110104", 2)
    assert first["ActiveParticipant"][0]["UserID"] == "STORESCU"
    assert first["ActiveParticipant"][1] == {"UserID": "LGENODE", "UserIsRequestor": False,
                                             "RoleIDCode": {"code": "110152", "codeSystemName": "DCM",
                                                            "displayName": "Destination Role ID"}}
    assert first["Detail"]["counts"] == {"stored": 3, "duplicates": 0, "refused": 0}
    study = first["ParticipantObjectIdentification"][0]
    ds = dcmread(files[0], stop_before_pixels=True)
    assert study["ParticipantObjectID"] == ds.StudyInstanceUID
    assert study["ParticipantObjectDetail"]["series"] == {ds.SeriesInstanceUID: 3}
    assert second["ActiveParticipant"][0]["UserID"] == "TESTSCU"
    assert second["Detail"]["counts"] == {"stored": 0, "duplicates": 1, "refused": 1}
    assert second["EventOutcomeIndicator"] == 4 and list(second["Detail"]["refused_by_status"]) [0].startswith("0xC")
    [alert] = wait_records(path, "110113")
    assert alert["ActiveParticipant"][0]["UserID"] == "INTRUDER"
    assert alert["ActiveParticipant"][0]["NetworkAccessPointID"] == "127.0.0.1"
    assert alert["EventTypeCode"][0]["displayName"] == "Node Authentication"
    assert PATIENT not in path.read_text()
    assert len(read(path)) == 3  # the echo left no record


def test_every_delivery_attempt_is_recorded(node_config, tmp_path) -> None:
    from node.core import build_core
    from node.config import NodeConfig

    port = free_port()
    dests = NodeConfig.model_validate({"dicom": {"allow_any_peer": True}, "destinations": [
        {"type": "cstore", "name": "pacs", "host": "127.0.0.1", "port": port, "ae_title": "PACS"}]}).destinations
    cfg = node_config().model_copy(update={"destinations": dests})
    core = build_core(cfg)
    files = mr_files(tmp_path / "in", 2)
    outgoing = []
    for f in files:
        ds = dcmread(f)
        rel = core.files.relpath_for(str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID), str(ds.SOPInstanceUID))
        core.files.write(rel, f.read_bytes())
        outgoing.append(OutgoingObject("seg", str(ds.SOPInstanceUID), str(ds.SOPClassUID), rel))
    with core.sessions.begin() as s:
        s.add(Series(series_uid=str(ds.SeriesInstanceUID), study_uid=str(ds.StudyInstanceUID), state="selected"))
        s.flush()
        job = Job(series_uid=str(ds.SeriesInstanceUID), study_uid=str(ds.StudyInstanceUID), next_attempt_at=utcnow())
        s.add(job)
        s.flush()
        job_id = job.id
    path = tmp_path / "audit.jsonl"
    outbox = Outbox(core.sessions, core.files.root, cfg, audit=AuditLog(path))
    outbox.enqueue(job_id, outgoing)
    assert outbox.run_due() == 0  # the PACS is down
    pacs = storescp(port, tmp_path / "pacs")
    try:
        from datetime import timedelta

        assert outbox.run_due(now=utcnow() + timedelta(hours=1)) == 2
    finally:
        pacs.terminate()
        pacs.wait(timeout=10)
    failed, delivered = read(path)
    for rec in (failed, delivered):
        assert rec["EventID"]["displayName"] == "DICOM Instances Transferred" and rec["EventActionCode"] == "R"
        assert rec["ActiveParticipant"][0]["UserID"] == "LGENODE" and rec["ActiveParticipant"][1]["UserID"] == "PACS"
        obj = rec["ParticipantObjectIdentification"][0]
        assert obj["ParticipantObjectID"] == str(ds.StudyInstanceUID) and obj["ParticipantObjectDetail"]["job_id"] == job_id
    assert failed["EventOutcomeIndicator"] == 8 and failed["Detail"]["counts"] == {"sent": 2, "delivered": 0, "failed": 2}
    assert delivered["EventOutcomeIndicator"] == 0 and delivered["Detail"]["counts"]["delivered"] == 2
    assert PATIENT not in path.read_text()


def test_audit_file_is_private_and_apart_from_the_log(tmp_path, caplog) -> None:
    import logging
    import stat

    path = tmp_path / "sub" / "audit.jsonl"
    log = AuditLog(path)
    with caplog.at_level(logging.DEBUG):
        log.record(QUERY, outcome=0)
    log.close()
    assert stat.S_IMODE(path.stat().st_mode) & 0o007 == 0  # nothing for "other"
    assert len(read(path)) == 1 and not caplog.records  # nothing reached the operational log


def test_a_failed_audit_write_is_one_log_line_not_a_crash(tmp_path, caplog, capsys) -> None:
    import logging
    import shutil

    folder = tmp_path / "gone"
    log = AuditLog(folder / "audit.jsonl")
    shutil.rmtree(folder)  # e.g. the volume went away
    with caplog.at_level(logging.ERROR):
        log.record(QUERY)
    log.close()
    assert [r.getMessage() for r in caplog.records] == ["audit trail write failed"]
    assert "Traceback" not in capsys.readouterr().err
