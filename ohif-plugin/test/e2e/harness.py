"""Processes the end-to-end test needs: Orthanc (with DICOMweb), a node API stub, the viewer.

All servers are on 127.0.0.1 with free ports. Orthanc 1.10 has no bind-address option: its
HTTP server listens on all interfaces with ``RemoteAccessAllowed: false`` (it answers only
loopback clients) and its DICOM server is disabled (DICOMweb is all the test uses).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

log = logging.getLogger("e2e.harness")

ORTHANC = "/usr/sbin/Orthanc"
DICOMWEB_PLUGIN_DIRS = ["/usr/share/orthanc/plugins", "/usr/lib/orthanc"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(url: str, timeout: float = 30.0, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before {url} answered")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status < 500:
                    return
        except Exception as exc:  # noqa: BLE001 - retried until the deadline
            last = exc
        time.sleep(0.2)
    raise TimeoutError(f"{url} did not answer within {timeout} s ({last})")


def stop(proc: subprocess.Popen | None, timeout: float = 10.0) -> None:
    """Stop one process we started (by its own pid; never by name)."""
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=5)


def dicomweb_plugin() -> str | None:
    for d in DICOMWEB_PLUGIN_DIRS:
        p = Path(d) / "libOrthancDicomWeb.so"
        if p.exists():
            return str(p)
    return None


@dataclass
class Orthanc:
    workdir: Path
    http_port: int = 0
    proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def dicomweb(self) -> str:
        return f"{self.url}/dicom-web"

    def start(self) -> "Orthanc":
        plugin = dicomweb_plugin()
        if not Path(ORTHANC).exists() or plugin is None:
            raise RuntimeError("Orthanc with the DICOMweb plugin is not installed "
                               "(apt-get install orthanc orthanc-dicomweb)")
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.http_port = self.http_port or free_port()
        cfg = {
            "Name": "lgenode-ohif-e2e",
            "StorageDirectory": str(self.workdir / "storage"),
            "IndexDirectory": str(self.workdir / "storage"),
            "HttpPort": self.http_port,
            "HttpServerEnabled": True,
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": False,
            "DicomServerEnabled": False,
            "DicomPort": free_port(),
            "HttpThreadsCount": 8,
            "ConcurrentJobs": 1,
            "SaveJobs": False,
            "StableAge": 1,
            "Plugins": [plugin],
            "DicomWeb": {
                "Enable": True,
                "Root": "/dicom-web/",
                "EnableWado": True,
                "WadoRoot": "/wado",
                "Ssl": False,
                "StudiesMetadata": "Full",
                "SeriesMetadata": "Full",
            },
        }
        cfg_path = self.workdir / "orthanc.json"
        cfg_path.write_text(json.dumps(cfg, indent=1))
        logf = open(self.workdir / "orthanc.log", "w")  # noqa: SIM115 - closed with the process
        self.proc = subprocess.Popen([ORTHANC, str(cfg_path)], stdout=logf, stderr=subprocess.STDOUT,
                                     cwd=self.workdir)
        wait_http(f"{self.url}/system", timeout=30, proc=self.proc)
        log.info("Orthanc on %s", self.url)
        return self

    def stop(self) -> None:
        stop(self.proc)


# ------------------------------------------------------------------ node API stub (API.md)


@dataclass
class NodeApiStub:
    """In-memory stand-in for the node's review endpoints (ohif-plugin/API.md)."""

    jobs: list[dict] = field(default_factory=list)
    reviews: dict[int, list[dict]] = field(default_factory=dict)
    requests: list[dict] = field(default_factory=list)
    server: ThreadingHTTPServer | None = None
    port: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def add_job(self, study_uid: str, series_uid: str) -> dict:
        job = {"id": len(self.jobs) + 1, "study_uid": study_uid, "series_uid": series_uid,
               "revision": 1, "state": "done", "stage": None, "attempts": 1, "max_attempts": 3,
               "reason": None, "created_at": _now(), "started_at": _now(), "finished_at": _now(),
               "result": {}}
        self.jobs.append(job)
        return job

    def _job_out(self, job: dict) -> dict:
        hist = self.reviews.get(job["id"], [])
        return {**job, "review": hist[0] if hist else None}

    def start(self) -> "NodeApiStub":
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def _send(self, status: int, body: object) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):  # noqa: N802
                u = urlparse(self.path)
                stub.requests.append({"method": "GET", "path": self.path})
                if u.path == "/api/jobs":
                    q = parse_qs(u.query)
                    out = [stub._job_out(j) for j in reversed(stub.jobs)
                           if ("study_uid" not in q or j["study_uid"] == q["study_uid"][0])
                           and ("series_uid" not in q or j["series_uid"] == q["series_uid"][0])]
                    return self._send(200, out)
                parts = u.path.strip("/").split("/")
                if len(parts) == 4 and parts[:2] == ["api", "jobs"] and parts[3] == "reviews":
                    return self._send(200, stub.reviews.get(int(parts[2]), []))
                return self._send(404, {"detail": "not found"})

            def do_POST(self):  # noqa: N802
                u = urlparse(self.path)
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                stub.requests.append({"method": "POST", "path": self.path, "body": body})
                parts = u.path.strip("/").split("/")
                if len(parts) == 4 and parts[:2] == ["api", "jobs"] and parts[3] == "review":
                    job_id = int(parts[2])
                    if not any(j["id"] == job_id for j in stub.jobs):
                        return self._send(404, {"detail": f"no job {job_id}"})
                    if body.get("decision") not in ("accepted", "rejected"):
                        return self._send(422, {"detail": "decision must be accepted or rejected"})
                    hist = stub.reviews.setdefault(job_id, [])
                    review = {"id": sum(len(v) for v in stub.reviews.values()) + 1, "job_id": job_id,
                              "decision": body["decision"], "comment": body.get("comment"),
                              "reviewer": body.get("reviewer"),
                              "seg_series_uid": body.get("seg_series_uid"),
                              "seg_sop_instance_uid": body.get("seg_sop_instance_uid"),
                              "created_at": _now()}
                    hist.insert(0, review)
                    return self._send(201, review)
                return self._send(404, {"detail": "not found"})

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port or 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server:
            self.server.shutdown()
            self.server.server_close()


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


# ------------------------------------------------------------------ viewer server


@dataclass
class ViewerServer:
    plugin_dir: Path
    dicomweb: str
    node: str
    workdir: Path
    port: int = 0
    proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "ViewerServer":
        self.port = self.port or free_port()
        logf = open(self.workdir / "serve.log", "w")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [shutil.which("node") or "node", "scripts/serve.mjs", "--port", str(self.port),
             "--dicomweb", self.dicomweb, "--node", self.node],
            cwd=self.plugin_dir, stdout=logf, stderr=subprocess.STDOUT,
            env={**os.environ, "LGE_SERVE_LOG": "1"})
        wait_http(f"{self.url}/app-config.js", timeout=20, proc=self.proc)
        return self

    def stop(self) -> None:
        stop(self.proc)
