"""`lgenode serve` with TLS everywhere and API keys: DCMTK sends over DICOM TLS, a client reads
over HTTPS with a key, and the audit trail records the configuration load, the start, the
transfer, the API read, refusals and the stop. Also `lgenode config check`'s security verdicts."""

from __future__ import annotations

import hashlib
import http.client
import json
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from node.config import ConfigError, NodeConfig, load_config
from node.service import NodeService
from tests.conftest import REPO, free_port
from tests.support.dicom_peers import PATIENT, dcmtk, mr_files
from tests.support.pki import LocalCA

KEY = "service-test-key-0123456789"
LGENODE = str(Path(sys.executable).with_name("lgenode"))


def _get(url: str, ctx: ssl.SSLContext, key: str | None = None) -> tuple[int, dict]:
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {key}"} if key else {})
    try:
        with urllib.request.urlopen(req, timeout=10, context=ctx) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def test_serve_with_dicom_tls_https_api_keys_and_audit(tmp_path: Path) -> None:
    ca = LocalCA(tmp_path / "pki")
    server, client = ca.issue("lgenode"), ca.issue("modality")
    tls = {"enabled": True, "cert_file": str(server.cert), "key_file": str(server.key), "ca_file": str(ca.ca_file)}
    dicom_port, api_port = free_port(), free_port()
    cfg = NodeConfig.model_validate({
        "dicom": {"port": dicom_port, "allowed_peers": [{"ae_title": "STORESCU", "host": "127.0.0.1"}],
                  "tls": {**tls, "require_client_cert": True}},
        "storage": {"root": str(tmp_path / "store"), "min_free_mb": 1},
        "database": {"url": f"sqlite:///{tmp_path / 'node.db'}"},
        "jobs": {"workers": 0},
        "api": {"port": api_port, "tls": tls,
                "auth": {"api_keys": [{"name": "monitor", "key_env": "TEST_KEY", "roles": ["read"]}]}},
        "audit": {"path": str(tmp_path / "audit" / "trail.jsonl")},
    })
    import os

    os.environ["TEST_KEY"] = KEY
    try:
        service = NodeService(cfg, config_path=None)
    finally:
        del os.environ["TEST_KEY"]
    service.start()
    try:
        files = mr_files(tmp_path / "in", 2)
        r = dcmtk("storescu", "+tls", str(client.key), str(client.cert), "+cf", str(ca.ca_file), "-aec", "LGENODE",
                  "127.0.0.1", str(dicom_port), *map(str, files))
        assert r.returncode == 0, r.stderr
        ctx = ssl.create_default_context(cafile=str(ca.ca_file))
        base = f"https://127.0.0.1:{api_port}"
        deadline = time.time() + 20
        while True:  # uvicorn starts in its own thread
            try:
                status, health = _get(base + "/health", ctx)
                break
            except urllib.error.URLError:
                if time.time() > deadline:
                    raise
                time.sleep(0.2)
        assert status == 200, health
        assert _get(base + "/api/series", ctx)[0] == 401
        status, series = _get(base + "/api/series", ctx, KEY)
        assert status == 200 and series[0]["n_instances"] == 2
        with pytest.raises((OSError, http.client.HTTPException)):  # plain HTTP on the HTTPS port
            urllib.request.urlopen(f"http://127.0.0.1:{api_port}/health", timeout=5)
    finally:
        service.stop()
    lines = (tmp_path / "audit" / "trail.jsonl").read_text().splitlines()
    recs = [json.loads(x) for x in lines]
    events = [(r["EventID"]["displayName"], (r.get("EventTypeCode") or [{}])[0].get("displayName")) for r in recs]
    assert events[0] == ("Security Alert", "Software Configuration")
    assert events[1] == ("Application Activity", "Application Start")
    assert events[-1] == ("Application Activity", "Application Stop")
    [transfer] = [r for r in recs if r["EventID"]["code"] == "110104"]
    assert transfer["Detail"]["counts"]["stored"] == 2 and "CN=modality" in transfer["ActiveParticipant"][0]["AlternativeUserID"]
    assert any(r["EventID"]["displayName"] == "Query" and r["ActiveParticipant"][0]["UserID"] == "monitor" for r in recs)
    assert any(r["EventID"]["code"] == "110113" and r["Detail"].get("http_status") == 401 for r in recs)
    text = "\n".join(lines)
    assert PATIENT not in text and KEY not in text


def test_an_open_api_is_refused_on_a_network_address(tmp_path: Path) -> None:
    p = tmp_path / "open.yaml"
    p.write_text("dicom: {allow_any_peer: true}\napi: {host: 0.0.0.0, auth: {mode: open}}\n")
    with pytest.raises(ConfigError, match="open on host 0.0.0.0"):
        load_config(p, environ={})


def _check(tmp_path: Path, text: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    p = tmp_path / "node.yaml"
    p.write_text(text)
    import os

    base = {k: v for k, v in os.environ.items() if not k.startswith("LGENODE_")}
    return subprocess.run([LGENODE, "config", "check", "--config", str(p)], capture_output=True, text=True,
                          env={**base, **(env or {})})


def test_config_check_security_verdicts(tmp_path: Path) -> None:
    r = _check(tmp_path, "dicom: {allow_any_peer: true}\napi: {auth: {mode: open}}\n")
    assert r.returncode == 0 and "WARNING: api.auth.mode is open" in r.stderr
    r = _check(tmp_path, "dicom: {allow_any_peer: true}\n")
    assert r.returncode == 0 and "no api_keys and no oidc" in r.stderr
    r = _check(tmp_path, "dicom: {allow_any_peer: true}\napi: {host: 0.0.0.0}\n")
    assert "without api.tls" in r.stderr
    keyed = ("dicom: {allow_any_peer: true}\napi: {auth: {api_keys: [{name: k, key_env: MY_KEY, roles: [read]}]}}\n")
    r = _check(tmp_path, keyed)
    assert r.returncode == 0 and "MY_KEY is not set here: `lgenode serve` will refuse to start" in r.stderr
    r = _check(tmp_path, keyed, {"MY_KEY": "x" * 20})
    assert r.returncode == 0 and "WARNING" not in r.stderr, r.stderr
    r = _check(tmp_path, "dicom: {allow_any_peer: true, tls: {enabled: true, cert_file: nope.crt, key_file: nope.key}}\n"
               "api: {enabled: false}\n")
    assert r.returncode == 2 and "dicom.tls: cannot load" in r.stderr
    digest = hashlib.sha256(b"x" * 20).hexdigest()
    r = _check(tmp_path, f"dicom: {{allow_any_peer: true}}\napi: {{auth: {{api_keys: [{{name: k, key_sha256: '{digest}', "
               "roles: [read]}]}}\ndestinations: [{type: stow, name: p, url: 'http://x/dicom-web', verify_tls: false, "
               "auth_header: 'Bearer s3cret'}]\n")
    assert r.returncode == 0 and "verify_tls is false" in r.stderr and "plain http" in r.stderr
    assert "s3cret" not in r.stdout + r.stderr


def test_config_show_redacts_secrets(tmp_path: Path) -> None:
    p = tmp_path / "node.yaml"
    p.write_text("dicom: {allow_any_peer: true, tls: {key_password: hunter2hunter2}}\n"
                 "destinations: [{type: stow, name: p, url: 'https://x/dicom-web', auth_header: 'Bearer s3cret'}]\n")
    r = subprocess.run([LGENODE, "config", "show", "--config", str(p)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "s3cret" not in r.stdout and "hunter2" not in r.stdout and "**********" in r.stdout
    assert "s3cret" not in repr(load_config(p, environ={}))


def test_docker_and_example_configs_carry_api_credentials() -> None:
    for path in (REPO / "config" / "node.yaml", REPO / "docker" / "node.yaml"):
        cfg = load_config(path, environ={})
        assert cfg.api.auth.mode == "required" and cfg.api.auth.api_keys, path


def test_serve_refuses_to_start_without_its_api_key(tmp_path: Path) -> None:
    p = tmp_path / "node.yaml"
    p.write_text(f"dicom: {{allow_any_peer: true, port: {free_port()}}}\nstorage: {{root: store, min_free_mb: 1}}\n"
                 f"database: {{url: 'sqlite:///node.db'}}\napi: {{port: {free_port()}, auth: {{api_keys: "
                 "[{name: k, key_env: MY_KEY, roles: [read]}]}}\n")
    import os

    env = {k: v for k, v in os.environ.items() if k != "MY_KEY"}
    r = subprocess.run([LGENODE, "serve", "--config", str(p)], capture_output=True, text=True, env=env, timeout=60)
    assert r.returncode == 2 and "MY_KEY is not set" in r.stderr
