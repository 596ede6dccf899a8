from __future__ import annotations

from fastapi.testclient import TestClient

from node.api.app import create_app
from node.api.auth import Authenticator, sha256_hex
from node.db.models import Job, Series, utcnow
from node.security.settings import AuthConfig

KEY = "test-key-0123456789abcdef"
ADMIN = Authenticator(AuthConfig.model_validate(
    {"api_keys": [{"name": "tester", "key_sha256": sha256_hex(KEY), "roles": ["admin"]}]}))


def client_for(core, scp_alive=lambda: True) -> TestClient:  # type: ignore[no-untyped-def]
    return TestClient(create_app(core.sessions, core.files.root, scp_alive, auth=ADMIN),
                      headers={"Authorization": f"Bearer {KEY}"})


def test_health_jobs_series_metrics(core) -> None:
    with core.sessions.begin() as s:
        s.add(Series(series_uid="1.2.3.5", study_uid="1.2.3", state="selected", reason="LGE series, 8 slices"))
        s.flush()
        s.add(Job(series_uid="1.2.3.5", study_uid="1.2.3", next_attempt_at=utcnow()))
    up = {"v": True}
    client = client_for(core, lambda: up["v"])
    r = client.get("/health")
    assert r.status_code == 200 and r.json()["checks"]["database"] == "ok"
    up["v"] = False
    assert client.get("/health").status_code == 503
    jobs = client.get("/api/jobs").json()
    assert jobs[0]["series_uid"] == "1.2.3.5" and jobs[0]["state"] == "queued"
    assert client.get(f"/api/jobs/{jobs[0]['id']}").json()["id"] == jobs[0]["id"]
    assert client.get("/api/jobs/9999").status_code == 404
    assert client.get("/api/series?state=selected").json()[0]["reason"] == "LGE series, 8 slices"
    assert client.get("/api/jobs?state=done").json() == []
    m = client.get("/metrics")
    assert m.status_code == 200 and "lgenode_instances_received_total" in m.text


def test_review_decisions_are_recorded_and_listed(core) -> None:
    with core.sessions.begin() as s:
        s.add(Series(series_uid="1.2.3.5", study_uid="1.2.3", state="selected"))
        s.flush()
        s.add(Job(series_uid="1.2.3.5", study_uid="1.2.3", state="done", next_attempt_at=utcnow()))
    client = client_for(core)
    [job] = client.get("/api/jobs", params={"study_uid": "1.2.3", "series_uid": "1.2.3.5"}).json()
    assert job["review"] is None
    assert client.get("/api/jobs", params={"series_uid": "9.9"}).json() == []
    r = client.post(f"/api/jobs/{job['id']}/review", json={"decision": "rejected", "comment": "misses apex",
                                                             "reviewer": "Doe^Jane"})
    # The reviewer is the authenticated identity, not the name in the body.
    assert r.status_code == 201 and r.json()["decision"] == "rejected" and r.json()["reviewer"] == "tester"
    r = client.post(f"/api/jobs/{job['id']}/review", json={"decision": "accepted", "reviewer": "Doe^Jane",
                                                             "seg_series_uid": "1.2.3.6"})
    assert r.status_code == 201
    assert client.get(f"/api/jobs/{job['id']}").json()["review"]["decision"] == "accepted"
    history = client.get(f"/api/jobs/{job['id']}/reviews").json()
    assert [h["decision"] for h in history] == ["accepted", "rejected"]
    assert client.post(f"/api/jobs/{job['id']}/review", json={"decision": "maybe"}).status_code == 422
    assert client.post(f"/api/jobs/{job['id']}/review", json={"decision": "accepted", "comment": "x" * 2000}).status_code == 422
    assert client.post("/api/jobs/999/review", json={"decision": "accepted"}).status_code == 404
    assert client.get("/api/jobs/999/reviews").status_code == 404
