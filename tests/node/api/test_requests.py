"""POST/GET /api/inference-requests: deny by default, roles, validation, the record it keeps."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient

from node.api.app import create_app
from node.api.auth import Authenticator, sha256_hex
from node.db.models import InferenceRequest
from node.security.audit import AuditLog
from node.security.settings import AuthConfig

RIS, READER, ADMIN = "ris-key-0123456789abc", "reader-key-0123456789", "admin-key-0123456789"
STUDY = "1.2.826.0.1.3680043.8.498.12345"
KEYS = {"api_keys": [
    {"name": "ris", "key_sha256": sha256_hex(RIS), "roles": ["request", "read"]},
    {"name": "reader", "key_sha256": sha256_hex(READER), "roles": ["read"]},
    {"name": "ops", "key_sha256": sha256_hex(ADMIN), "roles": ["admin"]},
]}


def client_for(core, tmp_path: Path, auth: dict | None = KEYS) -> TestClient:  # type: ignore[no-untyped-def]
    authn = Authenticator(AuthConfig.model_validate(auth), {}) if auth is not None else None
    app = create_app(core.sessions, core.files.root, lambda: True, auth=authn, audit=AuditLog(tmp_path / "audit.jsonl"),
                     sources=["pacs"], destinations=["pacs-web"])
    return TestClient(app)


def test_unauthenticated_is_401_and_nothing_is_queued(core, tmp_path) -> None:  # type: ignore[no-untyped-def]
    for auth in (None, KEYS):
        c = client_for(core, tmp_path, auth)
        r = c.post("/api/inference-requests", json={"study_uid": STUDY, "source": "pacs"})
        assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Bearer")
        assert c.get("/api/inference-requests/1").status_code == 401
        assert c.post("/api/inference-requests", json={"study_uid": STUDY, "source": "pacs"},
                      headers={"X-API-Key": "not-a-key-0123456789"}).status_code == 401
    with core.sessions() as s:
        assert s.query(InferenceRequest).count() == 0


def test_request_role_queues_reader_cannot(core, tmp_path) -> None:  # type: ignore[no-untyped-def]
    c = client_for(core, tmp_path)
    body = {"study_uid": STUDY, "source": "pacs", "series_uids": [STUDY + ".2", STUDY + ".1"],
            "destinations": ["pacs-web"], "priority": 5, "transaction_id": "ris-4711"}
    assert c.post("/api/inference-requests", json=body, headers={"X-API-Key": READER}).status_code == 403
    r = c.post("/api/inference-requests", json=body, headers={"Authorization": f"Bearer {RIS}"})
    assert r.status_code == 202, r.text
    rid = r.json()["id"]
    assert r.json()["state"] == "queued"
    got = c.get(f"/api/inference-requests/{rid}", headers={"X-API-Key": READER})
    assert got.status_code == 200
    g = got.json()
    assert g["study_uid"] == STUDY and g["state"] == "queued" and g["principal"] == "ris"
    assert g["series_uids"] == [STUDY + ".1", STUDY + ".2"] and g["priority"] == 5
    assert g["transaction_id"] == "ris-4711" and g["destinations"] == ["pacs-web"]
    assert g["instances_retrieved"] == 0 and g["instances_expected"] is None and g["results"] is None
    assert "queued" in g["stages"]
    # admin may do everything
    assert c.post("/api/inference-requests", json={"study_uid": STUDY, "source": "pacs"},
                  headers={"X-API-Key": ADMIN}).status_code == 202
    assert c.get("/api/inference-requests/999", headers={"X-API-Key": READER}).status_code == 404


def test_bad_requests_are_422_with_the_reason(core, tmp_path) -> None:  # type: ignore[no-untyped-def]
    c = client_for(core, tmp_path)
    h = {"X-API-Key": RIS}
    r = c.post("/api/inference-requests", json={"study_uid": STUDY, "source": "nope"}, headers=h)
    assert r.status_code == 422 and "unknown source 'nope'" in r.json()["detail"]
    r = c.post("/api/inference-requests", json={"study_uid": STUDY, "source": "pacs", "destinations": ["x"]}, headers=h)
    assert r.status_code == 422 and "unknown destination" in r.json()["detail"]
    r = c.post("/api/inference-requests", json={"study_uid": "1.2.abc", "source": "pacs"}, headers=h)
    assert r.status_code == 422 and "not a valid DICOM UID" in r.text
    r = c.post("/api/inference-requests", json={"study_uid": STUDY, "source": "pacs", "colour": "red"}, headers=h)
    assert r.status_code == 422
    with core.sessions() as s:
        assert s.query(InferenceRequest).count() == 0
