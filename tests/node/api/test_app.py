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


def test_review_keeps_what_the_reader_saw(core) -> None:
    """The viewer sends the version and the figures on screen; the node stores and returns them."""
    with core.sessions.begin() as s:
        s.add(Series(series_uid="1.2.3.7", study_uid="1.2.3", state="selected"))
        s.flush()
        s.add(Job(series_uid="1.2.3.7", study_uid="1.2.3", state="done", next_attempt_at=utcnow()))
    client = client_for(core)
    [job] = client.get("/api/jobs", params={"series_uid": "1.2.3.7"}).json()
    shown = {"seg_version": 2, "sr_sop_instance_uid": "1.2.3.7.9",
             "figures": {"infarct_percent": 22.9, "lv_cavity_ml": 71.9, "transmural_segments": 3,
                         "covered_segments": 16, "quality_score": 0.71, "needs_review_shown": True}}
    r = client.post(f"/api/jobs/{job['id']}/review", json={"decision": "accepted", "shown": shown})
    assert r.status_code == 201
    got = client.get(f"/api/jobs/{job['id']}/reviews").json()[0]["shown"]
    assert got["seg_version"] == 2 and got["sr_sop_instance_uid"] == "1.2.3.7.9"
    assert got["figures"]["infarct_percent"] == 22.9 and got["figures"]["covered_segments"] == 16
    # an accept despite the "needs careful review" banner is on record
    assert got["figures"]["needs_review_shown"] is True and got["figures"]["quality_score"] == 0.71
    bad = client.post(f"/api/jobs/{job['id']}/review",
                      json={"decision": "accepted", "shown": {"figures": {"made_up": 1}}})
    assert bad.status_code == 422  # unknown figures are refused, not silently dropped


def test_health_reports_degraded_states_and_ready_is_separate(core, tmp_path) -> None:
    """D3: /health said "ok" while every C-STORE was refused 0xA700 for low disk. Degraded states
    come with reasons, and /ready (can the node receive now?) is distinct from liveness."""
    import shutil

    from node.db.models import Delivery

    free_mb = shutil.disk_usage(core.files.root).free // (1024 * 1024)
    state = {"scp": True, "workers": (1, 1), "min_free_mb": 1}

    def client_for(min_free_mb: int) -> TestClient:
        return TestClient(create_app(core.sessions, core.files.root, lambda: state["scp"], min_free_mb=min_free_mb,
                                     workers=lambda: state["workers"]))

    ok = client_for(1)
    r = ok.get("/health")
    assert r.status_code == 200 and r.json()["status"] == "ok" and r.json()["reasons"] == []
    assert ok.get("/ready").status_code == 200 and ok.get("/ready").json()["ready"] is True

    low = client_for(free_mb + 1024)  # the disk is below the configured minimum
    r = low.get("/health")
    assert r.status_code == 200 and r.json()["status"] == "degraded"
    assert any("below storage.min_free_mb" in why for why in r.json()["reasons"])
    r = low.get("/ready")
    assert r.status_code == 503 and any("0xA700" in why for why in r.json()["reasons"])

    with core.sessions.begin() as s:  # a delivery waiting for its retry
        s.add(Series(series_uid="1.2.3.5", study_uid="1.2.3", state="selected"))
        s.flush()
        job = Job(series_uid="1.2.3.5", study_uid="1.2.3", next_attempt_at=utcnow())
        s.add(job)
        s.flush()
        s.add(Delivery(job_id=job.id, destination="pacs", kind="seg", sop_instance_uid="1.2.3.9", sop_class_uid="1.2",
                       path="x", attempts=1, last_error="cannot connect", next_attempt_at=utcnow()))
    r = ok.get("/health")
    assert r.json()["status"] == "degraded" and any("deliveries failing: 1" in why for why in r.json()["reasons"])
    assert ok.get("/ready").status_code == 200  # still receives

    state["workers"] = (0, 1)
    r = ok.get("/health")
    assert r.status_code == 503 and r.json()["status"] == "down"
    assert any("job workers stopped" in why for why in r.json()["reasons"])
    state["workers"] = (1, 1)

    bad = TestClient(create_app(_broken_sessions(tmp_path), core.files.root, lambda: True, min_free_mb=1))
    r = bad.get("/health")
    assert r.status_code == 200 and r.json()["status"] == "degraded" and "database unreachable" in r.json()["reasons"]
    assert bad.get("/ready").status_code == 503


def _broken_sessions(tmp_path):  # type: ignore[no-untyped-def]
    """Sessions on a database that cannot be opened (its path is a folder)."""
    from node.db.session import make_engine, session_factory

    (tmp_path / "db-is-a-folder").mkdir()
    return session_factory(make_engine(f"sqlite:///{tmp_path / 'db-is-a-folder'}"))


def test_health_names_a_gone_cluster_node_that_holds_undelivered_results(core) -> None:
    from datetime import timedelta

    from node.cluster.nodes import announce
    from node.db.models import ClusterNode, Delivery

    announce(core.sessions, "node-a", "http://127.0.0.1:1/dicom-web", starting=True)
    announce(core.sessions, "node-b", "http://127.0.0.1:2/dicom-web", starting=True)
    with core.sessions.begin() as s:
        s.get(ClusterNode, "node-b").updated_at = utcnow() - timedelta(seconds=400)  # gone ~7 min ago
        s.add(Series(series_uid="1.2.3.5", study_uid="1.2.3", state="selected"))
        s.flush()
        job = Job(series_uid="1.2.3.5", study_uid="1.2.3", state="done", next_attempt_at=utcnow())
        s.add(job)
        s.flush()
        s.add(Delivery(job_id=job.id, destination="pacs", kind="seg", sop_instance_uid="1.2.3.9", sop_class_uid="1.2",
                       path="x", attempts=0, next_attempt_at=utcnow(), node="node-b"))
    client = TestClient(create_app(core.sessions, core.files.root, lambda: True, cluster_heartbeat_s=30))
    body = client.get("/health").json()
    assert body["status"] == "degraded"
    assert body["checks"]["cluster"] == {"nodes": 2, "stale": [
        {"name": "node-b", "seconds_since_heartbeat": body["checks"]["cluster"]["stale"][0]["seconds_since_heartbeat"],
         "pending_deliveries": 1}]}
    assert 399 <= body["checks"]["cluster"]["stale"][0]["seconds_since_heartbeat"] <= 460
    assert any("cluster node 'node-b' last seen" in why and "1 undelivered result object(s)" in why
               for why in body["reasons"])
    # without a cluster the check is absent
    assert "cluster" not in TestClient(create_app(core.sessions, core.files.root, lambda: True)).get(
        "/health").json()["checks"]
