"""API authentication: secure by default, API keys, OIDC bearer JWTs, roles, the reviewer is
the verified identity, and every decision in the audit trail."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from pathlib import Path

import jwt
import pytest
from fastapi.testclient import TestClient

from node.api.app import create_app
from node.api.auth import Authenticator, sha256_hex
from node.db.models import Job, Series, utcnow
from node.security.audit import AuditLog
from node.security.settings import AuthConfig
from tests.support.pki import Issuer

READER, REVIEWER, ADMIN = "reader-key-0123456789", "reviewer-key-0123456789", "admin-key-0123456789"


@pytest.fixture
def job_id(core) -> int:  # type: ignore[no-untyped-def]
    with core.sessions.begin() as s:
        s.add(Series(series_uid="1.2.3.5", study_uid="1.2.3", state="selected"))
        s.flush()
        j = Job(series_uid="1.2.3.5", study_uid="1.2.3", state="done", next_attempt_at=utcnow())
        s.add(j)
        s.flush()
        return int(j.id)


@pytest.fixture
def issuer():  # type: ignore[no-untyped-def]
    i = Issuer().start()
    yield i
    i.stop()


def make_client(core, tmp_path: Path, auth: dict | None, environ: dict | None = None) -> tuple[TestClient, Path]:  # type: ignore[no-untyped-def]
    audit_path = tmp_path / "audit.jsonl"
    authn = Authenticator(AuthConfig.model_validate(auth), environ or {}) if auth is not None else None
    app = create_app(core.sessions, core.files.root, lambda: True, auth=authn, audit=AuditLog(audit_path))
    return TestClient(app), audit_path


def audit_records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


KEYS = {"api_keys": [
    {"name": "pacs-reader", "key_sha256": sha256_hex(READER), "roles": ["read"]},
    {"name": "ohif-e2e", "key_env": "LGENODE_API_KEY_OHIF", "roles": ["review"]},
    {"name": "ops", "key_sha256": sha256_hex(ADMIN), "roles": ["admin"]},
]}


def test_without_credentials_configured_everything_but_health_is_401(core, tmp_path, job_id) -> None:
    client, audit = make_client(core, tmp_path, None)
    assert client.get("/health").status_code == 200
    for path in ("/api/jobs", f"/api/jobs/{job_id}", "/api/series", "/metrics", "/docs", "/openapi.json",
                 "/redoc", "/no/such/path"):
        r = client.get(path)
        assert r.status_code == 401, path
        assert r.headers["www-authenticate"].startswith("Bearer")
    assert client.post(f"/api/jobs/{job_id}/review", json={"decision": "accepted"}).status_code == 401
    # Any token is refused when none is configured.
    assert client.get("/api/jobs", headers={"Authorization": "Bearer " + ADMIN}).status_code == 401
    alerts = [r for r in audit_records(audit) if r["EventID"]["displayName"] == "Security Alert"]
    assert len(alerts) == 10 and all(a["EventOutcomeIndicator"] == 4 for a in alerts)
    assert alerts[0]["ActiveParticipant"][0]["NetworkAccessPointID"] == "testclient"


def test_api_keys_roles_and_the_reviewer_is_the_verified_identity(core, tmp_path, job_id) -> None:
    client, audit = make_client(core, tmp_path, KEYS, {"LGENODE_API_KEY_OHIF": REVIEWER})
    read = {"Authorization": f"Bearer {READER}"}
    review = {"X-API-Key": REVIEWER}
    assert client.get("/api/jobs", headers=read).status_code == 200
    assert client.get("/metrics", headers=read).status_code == 200
    r = client.post(f"/api/jobs/{job_id}/review", headers=read, json={"decision": "accepted"})
    assert r.status_code == 403 and r.headers["www-authenticate"].endswith('error="insufficient_scope"')
    # A body that names someone else does not change who is recorded.
    r = client.post(f"/api/jobs/{job_id}/review", headers=review,
                    json={"decision": "rejected", "reviewer": "Mallory", "comment": "apex missed"})
    assert r.status_code == 201 and r.json()["reviewer"] == "ohif-e2e"
    assert client.get("/api/jobs", headers=review).status_code == 403  # review without read
    admin = {"Authorization": f"bearer {ADMIN}"}
    assert client.get(f"/api/jobs/{job_id}/reviews", headers=admin).json()[0]["reviewer"] == "ohif-e2e"
    for bad in ({"Authorization": "Bearer not-a-key-at-all-xxxx"}, {"X-API-Key": READER + "x"},
                {"Authorization": "Basic " + base64.b64encode(b"u:p").decode()}, {"Authorization": "Bearer"}):
        assert client.get("/api/jobs", headers=bad).status_code == 401, bad

    recs = audit_records(audit)
    reviewed = [r for r in recs if r["EventActionCode"] == "U" and r["EventOutcomeIndicator"] == 0]
    assert len(reviewed) == 1
    rec = reviewed[0]
    assert rec["EventID"]["code"] == "110103" and rec["ActiveParticipant"][0]["UserID"] == "ohif-e2e"
    obj = rec["ParticipantObjectIdentification"][0]
    assert obj["ParticipantObjectID"] == str(job_id)
    assert obj["ParticipantObjectDetail"]["study_uid"] == "1.2.3" and obj["ParticipantObjectDetail"]["decision"] == "rejected"
    queries = [r for r in recs if r["EventID"]["displayName"] == "Query"]
    assert queries and queries[0]["ActiveParticipant"][0]["UserID"] == "pacs-reader"
    assert queries[0]["Detail"]["job_ids"] == [job_id]  # which jobs the reader was shown
    reads = [r for r in recs if r["EventActionCode"] == "R"]
    obj = reads[0]["ParticipantObjectIdentification"][0]
    assert obj["ParticipantObjectID"] == str(job_id) and obj["ParticipantObjectDetail"]["study_uid"] == "1.2.3"
    assert not any(r["EventID"]["displayName"] == "Query" and "/metrics" in json.dumps(r) for r in recs)
    denied = [r for r in recs if r["EventID"]["code"] == "110113"]
    assert {d["EventTypeCode"][0]["displayName"] for d in denied} == {"Use of Restricted Function", "Login"}
    # No secret ever reaches the audit trail.
    assert READER not in audit.read_text() and REVIEWER not in audit.read_text()


def test_key_from_an_unset_or_weak_environment_variable_is_a_config_error() -> None:
    cfg = AuthConfig.model_validate(KEYS)
    with pytest.raises(ValueError, match="LGENODE_API_KEY_OHIF is not set"):
        Authenticator(cfg, {})
    with pytest.raises(ValueError, match="shorter than 16"):
        Authenticator(cfg, {"LGENODE_API_KEY_OHIF": "short"})
    with pytest.raises(ValueError, match="exactly one of key_env or key_sha256"):
        AuthConfig.model_validate({"api_keys": [{"name": "x", "roles": ["read"]}]})
    with pytest.raises(ValueError, match="64 hex digits"):
        AuthConfig.model_validate({"api_keys": [{"name": "x", "key_sha256": "abc", "roles": ["read"]}]})
    with pytest.raises(ValueError, match="duplicate"):
        AuthConfig.model_validate({"api_keys": [{"name": "x", "key_sha256": "a" * 64, "roles": ["read"]},
                                                {"name": "x", "key_sha256": "b" * 64, "roles": ["read"]}]})


def test_public_metrics_and_docs_only_when_configured(core, tmp_path) -> None:
    client, _ = make_client(core, tmp_path, {"public_metrics": True, "public_docs": True})
    assert client.get("/metrics").status_code == 200
    assert client.get("/openapi.json").status_code == 200 and client.get("/docs").status_code == 200
    schema = client.get("/openapi.json").json()
    assert set(schema["components"]["securitySchemes"]) == {"bearer", "apiKey"}
    assert schema["paths"]["/health"]["get"]["security"] == []
    assert client.get("/api/jobs").status_code == 401


def test_open_mode_is_explicit_and_records_anonymous(core, tmp_path, job_id) -> None:
    client, _ = make_client(core, tmp_path, {"mode": "open", "api_keys": KEYS["api_keys"][:1]})
    assert client.get("/api/jobs").status_code == 200
    r = client.post(f"/api/jobs/{job_id}/review", json={"decision": "accepted", "reviewer": "Dr Who"})
    assert r.status_code == 201 and r.json()["reviewer"] == "anonymous"
    # Credentials, when sent, are still verified (and then name the reviewer).
    assert client.get("/api/jobs", headers={"X-API-Key": "wrong-key-0123456789"}).status_code == 401
    assert client.get("/api/jobs", headers={"X-API-Key": READER}).status_code == 200


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _hs256(payload: dict, secret: bytes, kid: str) -> str:
    """Built by hand: PyJWT itself refuses to HMAC-sign with a public key."""
    head = _b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": kid}).encode()) + "." + _b64(json.dumps(payload).encode())
    return head + "." + _b64(hmac.new(secret, head.encode(), hashlib.sha256).digest())


def oidc_cfg(issuer: Issuer, **extra: object) -> dict:
    return {"oidc": {"issuer": issuer.url, "audience": "lgenode", **extra}}


def test_oidc_bearer_tokens(core, tmp_path, job_id, issuer) -> None:
    # a dozen bad tokens from one client in a row: the lockout throttle (test_lockout.py) is off here
    client, audit = make_client(core, tmp_path, {**oidc_cfg(issuer), "lockout": {"max_failures": 0}})

    def call(token: str, method: str = "GET") -> int:
        h = {"Authorization": f"Bearer {token}"}
        if method == "GET":
            return client.get("/api/jobs", headers=h).status_code
        return client.post(f"/api/jobs/{job_id}/review", headers=h, json={"decision": "accepted"}).status_code

    good = issuer.token("dr.house", ["read", "review", "offline_access"])
    assert call(good) == 200
    r = client.post(f"/api/jobs/{job_id}/review", headers={"Authorization": f"Bearer {good}"},
                    json={"decision": "accepted", "reviewer": "someone else"})
    assert r.status_code == 201 and r.json()["reviewer"] == "dr.house"
    assert call(issuer.token("ec.user", ["read"], alg="ES256")) == 200
    assert call(issuer.token("reader", ["read"]), "POST") == 403
    assert call(issuer.token("nobody", [])) == 403
    assert call(issuer.token("admin", ["admin"]), "POST") == 201
    assert call(issuer.token(lifetime=-120)) == 401  # expired (beyond the 30 s leeway)
    assert call(issuer.token(aud="another-app")) == 401
    assert call(issuer.token(iss="http://evil.example/realms/test")) == 401
    assert call(issuer.token(exp=None)) == 401  # exp is required
    assert call(issuer.token(nbf=int(time.time()) + 3600)) == 401
    from cryptography.hazmat.primitives.asymmetric import rsa

    forged_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    assert call(issuer.token(key=forged_key)) == 401  # right kid, wrong signature
    assert call(issuer.token(key=forged_key, kid="unknown")) == 401
    # alg confusion: HS256 keyed with the issuer's public key, and an unsigned token.
    pem = issuer.key.public_key().public_bytes(
        __import__("cryptography.hazmat.primitives.serialization", fromlist=["Encoding"]).Encoding.PEM,
        __import__("cryptography.hazmat.primitives.serialization", fromlist=["PublicFormat"]).PublicFormat.SubjectPublicKeyInfo)
    payload = jwt.decode(good, options={"verify_signature": False})
    assert call(_hs256(payload, pem, issuer.kid)) == 401
    assert call(jwt.encode(payload, None, algorithm="none")) == 401
    assert call(good[:-4] + "AAAA") == 401  # tampered signature
    # The key set is cached; unknown key ids refetch it at most once per 30 s (no flood to the issuer).
    before = issuer.jwks_requests
    for i in range(20):
        assert call(issuer.token(key=forged_key, kid=f"made-up-{i}")) == 401
    assert issuer.jwks_requests - before <= 1 and issuer.jwks_requests <= 3

    text = audit.read_text()
    assert good not in text  # tokens never reach the audit trail
    users = {r["ActiveParticipant"][0]["UserID"] for r in audit_records(audit) if r["EventOutcomeIndicator"] == 0}
    assert {"dr.house", "ec.user", "admin"} <= users


def test_oidc_roles_claim_and_explicit_jwks_url(core, tmp_path, job_id, issuer) -> None:
    cfg = oidc_cfg(issuer, roles_claim="scope", username_claim="email",
                   jwks_url=issuer.url + "/protocol/openid-connect/certs")
    client, _ = make_client(core, tmp_path, cfg)
    token = issuer.token("u", scope="openid read review", email="jane@example.org")
    r = client.post(f"/api/jobs/{job_id}/review", headers={"Authorization": f"Bearer {token}"},
                    json={"decision": "rejected"})
    assert r.status_code == 201 and r.json()["reviewer"] == "jane@example.org"


def test_identity_provider_down_is_503_not_401(core, tmp_path, issuer) -> None:
    client, _ = make_client(core, tmp_path, oidc_cfg(issuer))
    token = issuer.token()
    issuer.stop()
    r = client.get("/api/jobs", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 503 and "authentication unavailable" in r.json()["detail"]


def test_oidc_key_rotation_is_followed(core, tmp_path, job_id, issuer) -> None:
    from cryptography.hazmat.primitives.asymmetric import rsa

    authn = Authenticator(AuthConfig.model_validate(oidc_cfg(issuer)), {})
    assert authn.oidc is not None
    authn.oidc.REFRESH_SECONDS = 0.0  # (30 s in service) so the test need not wait
    client = TestClient(create_app(core.sessions, core.files.root, lambda: True, auth=authn))
    assert client.get("/api/jobs", headers={"Authorization": f"Bearer {issuer.token()}"}).status_code == 200
    issuer.key, issuer.kid = rsa.generate_private_key(public_exponent=65537, key_size=2048), "k2"
    assert client.get("/api/jobs", headers={"Authorization": f"Bearer {issuer.token()}"}).status_code == 200
