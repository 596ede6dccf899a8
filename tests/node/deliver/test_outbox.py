"""Delivery state, retries with backoff, and re-sending the same objects (real DCMTK storescp)."""

from __future__ import annotations

import subprocess
from datetime import timedelta
from io import BytesIO
from pathlib import Path

import pydicom
import pytest
from pydicom.filewriter import dcmwrite
from sqlalchemy import select

from node.db.models import Delivery, Job, Series, utcnow
from node.deliver.outbox import OutgoingObject, Outbox
from tests.conftest import free_port
from tests.support.dicom_peers import storescp

pytestmark = pytest.mark.dcmtk


def _storescp(port: int, out: Path) -> subprocess.Popen[str]:
    return storescp(port, out, "+xa")


def _queue_objects(core, objects) -> tuple[int, list[OutgoingObject]]:  # type: ignore[no-untyped-def]
    out = []
    for kind, ds in zip(("seg", "sr", "pdf"), objects):
        buf = BytesIO()
        dcmwrite(buf, ds, enforce_file_format=True)
        rel = core.files.relpath_for(str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID), str(ds.SOPInstanceUID))
        core.files.write(rel, buf.getvalue())
        out.append(OutgoingObject(kind, str(ds.SOPInstanceUID), str(ds.SOPClassUID), rel))
    with core.sessions.begin() as s:
        s.add(Series(series_uid="1.2.3.4", study_uid="1.2.3", state="selected"))
        s.flush()
        job = Job(series_uid="1.2.3.4", study_uid="1.2.3", state="done", next_attempt_at=utcnow())
        s.add(job)
        s.flush()
        return job.id, out


def test_pacs_down_then_back_same_objects_delivered(node_config, deliver_case, tmp_path: Path) -> None:
    from node.core import build_core

    port = free_port()
    cfg = node_config()
    cfg = cfg.model_copy(update={"destinations": [
        type(cfg).model_validate({"dicom": {"allow_any_peer": True}, "destinations": [
            {"type": "cstore", "name": "pacs", "host": "127.0.0.1", "port": port, "ae_title": "PACS"}]}).destinations[0]],
        "delivery": cfg.delivery.model_copy(update={"retry_backoff_seconds": 30, "max_attempts": 5})})
    core = build_core(cfg)
    _, objects = deliver_case
    job_id, outgoing = _queue_objects(core, objects)
    outbox = Outbox(core.sessions, core.files.root, cfg)
    assert outbox.enqueue(job_id, outgoing) == 3
    assert outbox.enqueue(job_id, outgoing) == 0  # idempotent

    assert outbox.run_due() == 0  # PACS is down
    with core.sessions() as s:
        rows = list(s.scalars(select(Delivery)))
    assert {(r.state, r.attempts) for r in rows} == {("pending", 1)}
    assert all(r.last_error for r in rows)
    assert outbox.run_due() == 0  # backing off: nothing is due yet, nothing is sent
    with core.sessions() as s:
        assert {r.attempts for r in s.scalars(select(Delivery))} == {1}

    received = tmp_path / "pacs"
    pacs = _storescp(port, received)
    try:
        assert outbox.run_due(now=utcnow() + timedelta(seconds=31)) == 3
    finally:
        pacs.terminate()
        pacs.wait(timeout=10)
    with core.sessions() as s:
        rows = list(s.scalars(select(Delivery)))
    assert {(r.state, r.attempts) for r in rows} == {("delivered", 2)}
    got = {str(pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID) for p in received.iterdir()}
    assert got == {o.sop_instance_uid for o in outgoing}  # the same UIDs: a retry is not a new copy


def test_gives_up_after_max_attempts(node_config, deliver_case) -> None:
    from node.core import build_core
    from node.config import NodeConfig

    dests = NodeConfig.model_validate({"dicom": {"allow_any_peer": True}, "destinations": [
        {"type": "cstore", "name": "pacs", "host": "127.0.0.1", "port": free_port(), "ae_title": "PACS"}]}).destinations
    cfg = node_config().model_copy(update={"destinations": dests})
    cfg = cfg.model_copy(update={"delivery": cfg.delivery.model_copy(update={"max_attempts": 2, "retry_backoff_seconds": 0})})
    core = build_core(cfg)
    job_id, outgoing = _queue_objects(core, deliver_case[1])
    outbox = Outbox(core.sessions, core.files.root, cfg)
    outbox.enqueue(job_id, outgoing)
    outbox.run_due()
    outbox.run_due(now=utcnow() + timedelta(seconds=1))
    with core.sessions() as s:
        assert {(r.state, r.attempts) for r in s.scalars(select(Delivery))} == {("failed", 2)}
    assert outbox.run_due(now=utcnow() + timedelta(days=1)) == 0


def test_backoff_is_exponential_and_capped(node_config) -> None:
    cfg = node_config()
    cfg = cfg.model_copy(update={"delivery": cfg.delivery.model_copy(update={"retry_backoff_seconds": 10,
                                                                             "max_backoff_seconds": 60})})
    from node.core import build_core

    core = build_core(cfg)
    ob = Outbox(core.sessions, core.files.root, cfg)
    assert [ob.backoff(a) for a in (1, 2, 3, 4, 5)] == [10, 20, 40, 60, 60]


def test_first_failure_is_logged_and_recorded_with_its_reason(node_config, deliver_case, caplog) -> None:
    """D7: the first failed attempt logged "error": null, and a refused connection was recorded
    as "association aborted"."""
    import logging

    from node.core import build_core
    from node.config import NodeConfig

    port = free_port()
    dests = NodeConfig.model_validate({"dicom": {"allow_any_peer": True}, "destinations": [
        {"type": "cstore", "name": "pacs", "host": "127.0.0.1", "port": port, "ae_title": "PACS"}]}).destinations
    cfg = node_config().model_copy(update={"destinations": dests})
    core = build_core(cfg)
    job_id, outgoing = _queue_objects(core, deliver_case[1])
    outbox = Outbox(core.sessions, core.files.root, cfg)
    outbox.enqueue(job_id, outgoing)
    caplog.set_level(logging.INFO, logger="node.deliver")
    assert outbox.run_due() == 0
    [rec] = [r for r in caplog.records if r.getMessage() == "delivery failed; will retry"]
    assert rec.error == f"cannot connect to 127.0.0.1:{port}: connection refused (nothing listens on that port)"
    with core.sessions() as s:
        assert {r.last_error for r in s.scalars(select(Delivery))} == {rec.error}


def test_cluster_node_sends_only_the_deliveries_whose_files_it_holds(node_config, deliver_case, tmp_path: Path) -> None:
    """Without shared storage (cluster.enabled) a result file is on the disk of the node that wrote
    it: each node's outbox claims its own rows (and unnamed ones from before), never another's."""
    from node.core import build_core
    from node.config import NodeConfig

    port = free_port()
    dests = NodeConfig.model_validate({"dicom": {"allow_any_peer": True}, "destinations": [
        {"type": "cstore", "name": "pacs", "host": "127.0.0.1", "port": port, "ae_title": "PACS"}]}).destinations
    cfg = node_config().model_copy(update={"destinations": dests})
    core = build_core(cfg)
    job_id, outgoing = _queue_objects(core, deliver_case[1])
    a, b, legacy = Outbox(core.sessions, core.files.root, cfg), Outbox(core.sessions, core.files.root, cfg), \
        Outbox(core.sessions, core.files.root, cfg)
    a.node_name, b.node_name = "node-a", "node-b"  # (cluster.enabled needs PostgreSQL; the rule is the outbox's)
    assert a.enqueue(job_id, outgoing[:1]) == 1 and b.enqueue(job_id, outgoing[1:2]) == 1
    assert legacy.enqueue(job_id, outgoing[2:]) == 1  # no cluster: node NULL
    with core.sessions() as s:
        assert {r.sop_instance_uid: r.node for r in s.scalars(select(Delivery))} == {
            outgoing[0].sop_instance_uid: "node-a", outgoing[1].sop_instance_uid: "node-b",
            outgoing[2].sop_instance_uid: None}
    received = tmp_path / "pacs"
    pacs = _storescp(port, received)
    try:
        assert a.run_due() == 2  # its own row and the unnamed one
    finally:
        pacs.terminate()
        pacs.wait(timeout=10)
    with core.sessions() as s:
        rows = {r.sop_instance_uid: (r.state, r.attempts) for r in s.scalars(select(Delivery))}
    assert rows[outgoing[1].sop_instance_uid] == ("pending", 0)  # node B's: untouched
    assert rows[outgoing[0].sop_instance_uid] == rows[outgoing[2].sop_instance_uid] == ("delivered", 1)
    got = {str(pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID) for p in received.iterdir()}
    assert got == {outgoing[0].sop_instance_uid, outgoing[2].sop_instance_uid}


def test_given_up_deliveries_sent_again_by_an_admin_once_the_pacs_is_back(node_config, deliver_case,
                                                                           tmp_path: Path) -> None:
    """The PACS was down past max_attempts: the deliveries failed for good. The administrator
    re-sends them through the API (POST /api/jobs/{id}/deliveries/rerun); the same objects arrive."""
    from fastapi.testclient import TestClient

    from node.api.app import create_app
    from node.api.auth import Authenticator, sha256_hex
    from node.config import NodeConfig
    from node.core import build_core
    from node.security.settings import AuthConfig

    port = free_port()
    dests = NodeConfig.model_validate({"dicom": {"allow_any_peer": True}, "destinations": [
        {"type": "cstore", "name": "pacs", "host": "127.0.0.1", "port": port, "ae_title": "PACS"}]}).destinations
    cfg = node_config().model_copy(update={"destinations": dests})
    cfg = cfg.model_copy(update={"delivery": cfg.delivery.model_copy(update={"max_attempts": 1, "retry_backoff_seconds": 0})})
    core = build_core(cfg)
    job_id, outgoing = _queue_objects(core, deliver_case[1])
    outbox = Outbox(core.sessions, core.files.root, cfg)
    outbox.enqueue(job_id, outgoing)
    assert outbox.run_due() == 0
    key = "admin-key-0123456789abcdef"
    auth = Authenticator(AuthConfig.model_validate(
        {"api_keys": [{"name": "it-admin", "key_sha256": sha256_hex(key), "roles": ["admin"]}]}))
    api = TestClient(create_app(core.sessions, core.files.root, lambda: True, auth=auth),
                     headers={"X-API-Key": key})
    listed = api.get(f"/api/jobs/{job_id}/deliveries").json()
    assert {(d["state"], d["attempts"]) for d in listed} == {("failed", 1)} and all(d["last_error"] for d in listed)

    received = tmp_path / "pacs"
    pacs = _storescp(port, received)
    try:
        r = api.post(f"/api/jobs/{job_id}/deliveries/rerun", params={"destination": "pacs"})
        assert r.status_code == 200, r.text
        assert {d["state"] for d in r.json()["deliveries"]} == {"pending"}
        assert all(d["last_error"].startswith("re-sent by it-admin after: ") for d in r.json()["deliveries"])
        assert outbox.run_due() == 3
    finally:
        pacs.terminate()
        pacs.wait(timeout=10)
    with core.sessions() as s:
        rows = list(s.scalars(select(Delivery)))
    assert {(r.state, r.attempts) for r in rows} == {("delivered", 1)}
    got = {str(pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID) for p in received.iterdir()}
    assert got == {o.sop_instance_uid for o in outgoing}
    # nothing left to re-send
    assert api.post(f"/api/jobs/{job_id}/deliveries/rerun").status_code == 409
