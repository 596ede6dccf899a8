"""DICOM TLS (BCP 195) with DCMTK as the peer, STOW-RS certificate checks, HTTPS for the API.
Certificates are made for each test by tests/support/pki.py."""

from __future__ import annotations

import json
import socket
import ssl
import threading
import time
import warnings
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from pydicom import dcmread

from node.deliver import CStoreDestination, StowDestination, deliver
from node.receive.scp import StorageSCP
from node.security.audit import AuditLog
from node.security.settings import TlsClientConfig, TlsServerConfig
from node.security.tls import client_context, server_context
from tests.conftest import free_port
from tests.support.dicom_peers import PATIENT, dcmtk, mr_files, storescp
from tests.support.pki import LocalCA

@pytest.fixture
def pki(tmp_path: Path) -> dict[str, Any]:
    ca = LocalCA(tmp_path / "pki")
    other = LocalCA(tmp_path / "pki-other", name="Other CA")
    return {"ca": ca, "other": other, "server": ca.issue("lgenode-server"), "client": ca.issue("modality-1"),
            "rogue": other.issue("rogue-modality")}








@pytest.fixture
def tls_scp(core, pki, tmp_path):  # type: ignore[no-untyped-def]
    def start(require_client_cert: bool) -> StorageSCP:
        cfg = core.cfg.dicom.model_copy(update={"tls": TlsServerConfig(
            enabled=True, cert_file=pki["server"].cert, key_file=pki["server"].key, ca_file=pki["ca"].ca_file,
            require_client_cert=require_client_cert)})
        server = StorageSCP(cfg, core.store, audit=AuditLog(tmp_path / "audit.jsonl"))
        server.start()
        servers.append(server)
        return server

    servers: list[StorageSCP] = []
    yield start
    for s in servers:
        s.stop()


def audit(tmp_path: Path) -> list[dict]:
    p = tmp_path / "audit.jsonl"
    return [json.loads(line) for line in p.read_text().splitlines()] if p.exists() else []


def test_dcmtk_storescu_over_tls_with_client_certificate(tls_scp, pki, core, tmp_path) -> None:
    scp = tls_scp(require_client_cert=True)
    files = mr_files(tmp_path / "in", 3)
    client, ca = pki["client"], pki["ca"].ca_file
    r = dcmtk("echoscu", "+tls", str(client.key), str(client.cert), "+cf", str(ca), "-aet", "ECHOSCU", "-aec", "LGENODE",
              "127.0.0.1", str(scp.port))
    assert r.returncode == 0, r.stderr
    r = dcmtk("storescu", "+tls", str(client.key), str(client.cert), "+cf", str(ca), "-aet", "STORESCU",
              "-aec", "LGENODE", "127.0.0.1", str(scp.port), *map(str, files))
    assert r.returncode == 0, r.stderr
    stored = [p for p in core.files.root.rglob("*.dcm") if ".incoming" not in p.parts]
    assert len(stored) == 3
    # The audit trail: who sent what, over which certificate, and no patient name.
    time.sleep(0.3)  # the close event is written as the association thread ends
    [rec] = [a for a in audit(tmp_path) if a["EventID"]["code"] == "110104"]
    assert rec["EventActionCode"] == "C" and rec["EventOutcomeIndicator"] == 0
    src = rec["ActiveParticipant"][0]
    assert src["UserID"] == "STORESCU" and src["NetworkAccessPointID"] == "127.0.0.1"
    assert "CN=modality-1" in src["AlternativeUserID"]
    assert rec["Detail"]["counts"] == {"stored": 3, "duplicates": 0, "refused": 0}
    assert rec["ParticipantObjectIdentification"][0]["ParticipantObjectID"] == str(dcmread(files[0]).StudyInstanceUID)
    assert PATIENT not in (tmp_path / "audit.jsonl").read_text()


def test_tls_scp_refuses_peers_without_a_trusted_certificate_and_is_not_blocked_by_a_silent_one(
        tls_scp, pki, core, tmp_path) -> None:
    scp = tls_scp(require_client_cert=True)
    files = mr_files(tmp_path / "in", 1)
    ca = str(pki["ca"].ca_file)
    # A peer that connects and never starts the handshake must not stop other peers (the
    # handshake runs in the connection's thread, not in the accept loop).
    silent = socket.create_connection(("127.0.0.1", scp.port))
    try:
        plain = dcmtk("storescu", "-aec", "LGENODE", "127.0.0.1", str(scp.port), *map(str, files))
        anonymous = dcmtk("storescu", "+tla", "+cf", ca, "-aec", "LGENODE", "127.0.0.1", str(scp.port), *map(str, files))
        rogue = pki["rogue"]
        untrusted = dcmtk("storescu", "+tls", str(rogue.key), str(rogue.cert), "+cf", ca, "-aec", "LGENODE",
                          "127.0.0.1", str(scp.port), *map(str, files))
        client = pki["client"]
        good = dcmtk("storescu", "+tls", str(client.key), str(client.cert), "+cf", ca, "-aec", "LGENODE",
                     "127.0.0.1", str(scp.port), *map(str, files), timeout=20)
    finally:
        silent.close()
    assert plain.returncode != 0 and anonymous.returncode != 0 and untrusted.returncode != 0
    assert good.returncode == 0, good.stderr
    alerts = [a for a in audit(tmp_path) if a["EventID"]["code"] == "110113"]
    assert len(alerts) >= 3 and all("TLS handshake failed" in a["EventOutcomeDescription"] for a in alerts)
    assert alerts[0]["EventTypeCode"][0]["displayName"] == "Node Authentication"


def test_tls_scp_without_client_certificates_accepts_anonymous_tls_and_rejects_tls_1_1(tls_scp, pki, tmp_path) -> None:
    scp = tls_scp(require_client_cert=False)
    files = mr_files(tmp_path / "in", 1)
    r = dcmtk("storescu", "+tla", "+cf", str(pki["ca"].ca_file), "-aec", "LGENODE", "127.0.0.1", str(scp.port),
              *map(str, files))
    assert r.returncode == 0, r.stderr
    # BCP 195: nothing older than TLS 1.2.
    old = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    old.check_hostname, old.verify_mode = False, ssl.CERT_NONE
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # TLS 1.1 is deprecated: that is the point
        old.minimum_version = old.maximum_version = ssl.TLSVersion.TLSv1_1
    try:
        old.set_ciphers("ALL:@SECLEVEL=0")
    except ssl.SSLError:
        pass
    with socket.create_connection(("127.0.0.1", scp.port), timeout=5) as raw:
        with pytest.raises((ssl.SSLError, OSError)):
            old.wrap_socket(raw).do_handshake()
    # A TLS 1.2 client gets an AEAD suite with forward secrecy.
    ctx = client_context(TlsClientConfig(enabled=True, ca_file=pki["ca"].ca_file))
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    with socket.create_connection(("127.0.0.1", scp.port), timeout=5) as raw:
        with ctx.wrap_socket(raw, server_hostname="127.0.0.1") as s:
            name, version, _ = s.cipher()
            assert version == "TLSv1.2" and ("GCM" in name or "CHACHA20" in name)
            assert name.startswith(("ECDHE", "DHE"))





def test_cstore_scu_over_tls_to_dcmtk_storescp(pki, tmp_path) -> None:
    files = mr_files(tmp_path / "in", 2)
    port = free_port()
    server, ca = pki["server"], pki["ca"].ca_file
    proc = storescp(port, tmp_path / "pacs", "+tls", str(server.key), str(server.cert), "+cf", str(ca), "-rc")
    try:
        ok_ctx = client_context(TlsClientConfig(enabled=True, ca_file=ca, cert_file=pki["client"].cert,
                                                key_file=pki["client"].key))
        results = deliver(files, CStoreDestination("127.0.0.1", port, "PACS", tls_context=ok_ctx))
        assert [r.ok for r in results] == [True, True], results
        # A server certificate from a CA we do not trust: nothing is sent.
        bad_ctx = client_context(TlsClientConfig(enabled=True, ca_file=pki["other"].ca_file,
                                                 cert_file=pki["client"].cert, key_file=pki["client"].key))
        results = deliver(files, CStoreDestination("127.0.0.1", port, "PACS", tls_context=bad_ctx))
        assert not any(r.ok for r in results)
        # The right CA but the wrong host name in the certificate check.
        named = client_context(TlsClientConfig(enabled=True, ca_file=ca, cert_file=pki["client"].cert,
                                               key_file=pki["client"].key))
        results = deliver(files, CStoreDestination("127.0.0.2", port, "PACS", tls_context=named))
        assert not any(r.ok for r in results)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    assert len(list((tmp_path / "pacs").iterdir())) == 2


class _Stow(BaseHTTPRequestHandler):
    def do_POST(self) -> None:  # noqa: N802
        self.rfile.read(int(self.headers["Content-Length"]))
        body = b'{"00081199": {"vr": "SQ", "Value": []}}'
        self.send_response(200)
        self.send_header("Content-Type", "application/dicom+json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


def test_stow_checks_the_server_certificate(pki, tmp_path) -> None:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Stow)
    httpd.socket = server_context(TlsServerConfig(enabled=True, cert_file=pki["server"].cert,
                                                  key_file=pki["server"].key)).wrap_socket(httpd.socket, server_side=True)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    url = f"https://127.0.0.1:{httpd.server_address[1]}/dicom-web"
    files = mr_files(tmp_path / "in", 1)
    try:
        untrusted = deliver(files, StowDestination(url))  # system CAs only: the test CA is unknown
        assert not untrusted[0].ok and "SSLError" in untrusted[0].detail
        trusted = deliver(files, StowDestination(url, ca_file=str(pki["ca"].ca_file)))
        # The server answered (over verified TLS): the instance is just not in its response.
        assert trusted[0].status == 200 and trusted[0].detail == "not in the STOW-RS response"
        unchecked = deliver(files, StowDestination(url, verify_tls=False))
        assert unchecked[0].status == 200
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_lgenode_echo_and_send_over_tls(tls_scp, pki, core, tmp_path) -> None:
    """`lgenode echo/send --tls`: the operator's own check of a TLS peer, with a client certificate."""
    from typer.testing import CliRunner

    from lgenode.cli import app

    scp = tls_scp(require_client_cert=True)
    base = ["--port", str(scp.port), "--aet", "ECHOSCU"]
    cert = ["--tls-ca", str(pki["ca"].ca_file), "--tls-cert", str(pki["client"].cert),
            "--tls-key", str(pki["client"].key)]
    runner = CliRunner()
    ok = runner.invoke(app, ["echo", *base, "--tls", *cert])
    assert ok.exit_code == 0 and "Success" in ok.output, ok.output
    plain = runner.invoke(app, ["echo", *base])  # a plain association to a TLS port
    assert plain.exit_code == 1 and "error:" in plain.output
    no_cert = runner.invoke(app, ["echo", *base, "--tls", "--tls-ca", str(pki["ca"].ca_file)])
    assert no_cert.exit_code == 1  # the SCP requires a client certificate
    rogue = runner.invoke(app, ["echo", *base, "--tls", "--tls-ca", str(pki["ca"].ca_file),
                                "--tls-cert", str(pki["rogue"].cert), "--tls-key", str(pki["rogue"].key)])
    assert rogue.exit_code == 1
    wrong_ca = runner.invoke(app, ["echo", *base, "--tls", "--tls-ca", str(pki["other"].ca_file),
                                   "--tls-cert", str(pki["client"].cert), "--tls-key", str(pki["client"].key)])
    assert wrong_ca.exit_code == 1  # we do not trust the node's certificate
    assert runner.invoke(app, ["echo", *base, "--tls-ca", str(pki["ca"].ca_file)]).exit_code == 2
    files = mr_files(tmp_path / "send", 3)
    sent = runner.invoke(app, ["send", *base[:2], "--aet", "LGESEND", "--tls", *cert, *map(str, files)])
    assert sent.exit_code == 0 and "sent 3/3 ok" in sent.output, sent.output
    stored = {dcmread(f, stop_before_pixels=True).SOPInstanceUID for f in files}
    assert stored <= {p.stem for p in Path(core.files.root).rglob("*.dcm")}
