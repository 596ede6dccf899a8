"""node/api/rerun.py: re-running a failed job needs the admin role, says why it cannot (404, 409),
records the authenticated identity in the reason and the audit trail."""

from __future__ import annotations

from pathlib import Path

from node.db.models import Job, JobState, Series, utcnow
from tests.node.api.test_auth import ADMIN, KEYS, READER, REVIEWER, audit_records, make_client


def _failed_job(core) -> int:  # type: ignore[no-untyped-def]
    with core.sessions.begin() as s:
        s.add(Series(series_uid="1.2.3.5", study_uid="1.2.3", state="selected"))
        s.flush()
        j = Job(series_uid="1.2.3.5", study_uid="1.2.3", state=JobState.FAILED, attempts=3,
                reason="segment: no trained model in /models/weights", next_attempt_at=utcnow())
        s.add(j)
        s.flush()
        return int(j.id)


def test_rerun_needs_admin_and_is_audited(core, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    jid = _failed_job(core)
    client, audit = make_client(core, tmp_path, KEYS, {"LGENODE_API_KEY_OHIF": REVIEWER})
    read, admin = {"X-API-Key": READER}, {"X-API-Key": ADMIN}
    assert client.post(f"/api/jobs/{jid}/rerun", headers=read).status_code == 403
    assert client.get(f"/api/jobs/{jid}/deliveries", headers=read).json() == []
    r = client.post(f"/api/jobs/{jid}/rerun", headers=admin)
    assert r.status_code == 200, r.text
    assert r.json()["state"] == "queued"
    assert r.json()["reason"] == "re-run by ops after: segment: no trained model in /models/weights"
    job = client.get(f"/api/jobs/{jid}", headers=read).json()
    assert job["state"] == "queued" and job["attempts"] == 0
    # twice: the job is no longer failed
    r = client.post(f"/api/jobs/{jid}/rerun", headers=admin)
    assert r.status_code == 409 and r.json()["detail"] == f"job {jid} is queued: only a failed job is run again"
    assert client.post("/api/jobs/4242/rerun", headers=admin).status_code == 404
    r = client.post(f"/api/jobs/{jid}/deliveries/rerun", headers=admin, params={"destination": "pacs"})
    assert r.status_code == 409 and r.json()["detail"] == f"job {jid} has no failed deliveries to 'pacs'"

    recs = [r for r in audit_records(audit) if r["EventActionCode"] == "U" and r["EventOutcomeIndicator"] == 0]
    assert len(recs) == 1 and recs[0]["ActiveParticipant"][0]["UserID"] == "ops"
    obj = recs[0]["ParticipantObjectIdentification"][0]
    assert obj["ParticipantObjectID"] == str(jid) and obj["ParticipantObjectDetail"]["action"] == "rerun"
    reads = [r for r in audit_records(audit) if r["EventActionCode"] == "R"]
    assert any(r["ParticipantObjectIdentification"][0]["ParticipantObjectID"] == str(jid) for r in reads)


def test_every_failed_delivery_resent_by_an_admin(core, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from node.db.models import Delivery

    jid = _failed_job(core)
    with core.sessions.begin() as s:
        for dest in ("pacs", "archive"):
            s.add(Delivery(job_id=jid, destination=dest, kind="seg", sop_instance_uid=f"1.2.9.{len(dest)}",
                           sop_class_uid="1.2.840.10008.5.1.4.1.1.66.4", path="x", state="failed", attempts=5,
                           last_error="connection refused", next_attempt_at=utcnow()))
    client, audit = make_client(core, tmp_path, KEYS, {"LGENODE_API_KEY_OHIF": REVIEWER})
    assert client.post("/api/deliveries/rerun", headers={"X-API-Key": READER}).status_code == 403
    r = client.post("/api/deliveries/rerun", headers={"X-API-Key": ADMIN}, params={"destination": "pacs"})
    assert r.status_code == 200, r.text
    assert r.json()["count"] == 1 and r.json()["job_ids"] == [jid]
    assert r.json()["deliveries"][0]["destination"] == "pacs" and r.json()["deliveries"][0]["state"] == "pending"
    r = client.post("/api/deliveries/rerun", headers={"X-API-Key": ADMIN}, params={"destination": "pacs"})
    assert r.status_code == 409 and r.json()["detail"] == "there are no failed deliveries to 'pacs'"
    recs = [x for x in audit_records(audit) if x["EventActionCode"] == "U" and x["EventOutcomeIndicator"] == 0]
    obj = recs[-1]["ParticipantObjectIdentification"][0]
    assert obj["ParticipantObjectID"] == str(jid) and obj["ParticipantObjectDetail"]["action"] == "resend"
