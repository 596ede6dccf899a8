"""SIGKILL the node in the middle of a WADO-RS retrieval, restart: the request completes and no
instance is stored twice. The real `lgenode serve` process, a real Orthanc as the source, and the
request queued with `lgenode request` (which writes it into the node's database)."""

from __future__ import annotations

import hashlib
import json
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pydicom
import pytest

from tests.conftest import free_port
from tests.node.retrieve.test_dicomweb import upload
from tests.support.orthanc import start_orthanc

pytestmark = [pytest.mark.orthanc, pytest.mark.slow]

LGENODE = str(Path(sys.executable).with_name("lgenode"))
KEY = "retrieve-crash-key-0123456789"


def write_config(tmp: Path, api_port: int, source_url: str) -> Path:
    cfg = tmp / "node.yaml"
    cfg.write_text(f"""
dicom:
  port: 0
  allowed_peers: [{{ae_title: STORESCU}}]
storage: {{root: store, min_free_mb: 1}}
database: {{url: "sqlite:///node.db"}}
series: {{idle_seconds: 3, sweep_interval_seconds: 0.3}}
selection: {{max_slices: 200}}
jobs: {{poll_interval_seconds: 0.2}}
sources:
  - {{type: dicomweb, name: pacs, url: "{source_url}", retry_backoff_seconds: 0.2}}
retrieve: {{sweep_interval_seconds: 0.2}}
api:
  port: {api_port}
  auth:
    api_keys: [{{name: ris, key_sha256: "{hashlib.sha256(KEY.encode()).hexdigest()}", roles: [read]}}]
""")
    return cfg


def api_get(port: int, path: str):  # type: ignore[no-untyped-def]
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers={"X-API-Key": KEY})
    with urllib.request.urlopen(req, timeout=5) as r:
        return json.loads(r.read())


def start_node(cfg: Path, log: Path, api_port: int) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen([LGENODE, "serve", "--config", str(cfg)], stdout=open(log, "ab"), stderr=subprocess.STDOUT)
    deadline = time.time() + 60
    while time.time() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"node exited: {log.read_text()[-2000:]}")
        try:
            api_get(api_port, "/health")
            return proc
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise AssertionError("node did not start")


def test_sigkill_during_retrieval_resumes_without_duplicates(tmp_path: Path) -> None:
    from dicomstudy.synthetic import write_synthetic_long_series

    files = sorted(write_synthetic_long_series(160, tmp_path / "series", rows=256, cols=256, seed=5))
    study = str(pydicom.dcmread(files[0], stop_before_pixels=True).StudyInstanceUID)
    orthanc = start_orthanc(tmp_path / "orthanc")
    node = None
    try:
        upload(orthanc, files)
        api_port = free_port()
        cfg = write_config(tmp_path, api_port, orthanc.dicomweb_url)
        log = tmp_path / "node.log"
        node = start_node(cfg, log, api_port)
        r = subprocess.run([LGENODE, "request", "--config", str(cfg), "--study", study, "--source", "pacs",
                            "--transaction-id", "crash-1"], capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        rid = int(r.stdout.split()[2])  # "inference request N queued ..."
        deadline = time.time() + 60
        got = {}
        while time.time() < deadline:
            got = api_get(api_port, f"/api/inference-requests/{rid}")
            if got["state"] not in ("queued", "querying", "retrieving") or got["instances_retrieved"] >= 20:
                break
            time.sleep(0.02)
        assert got["state"] == "retrieving" and 20 <= got["instances_retrieved"] < len(files), got
        node.send_signal(signal.SIGKILL)  # mid-retrieval, no chance to clean up
        node.wait(timeout=30)

        node = start_node(cfg, log, api_port)
        deadline = time.time() + 240
        while time.time() < deadline:
            got = api_get(api_port, f"/api/inference-requests/{rid}")
            if got["state"] in ("done", "failed"):
                break
            time.sleep(0.5)
        assert got["state"] == "done", got
        assert got["instances_expected"] == got["instances_retrieved"] == len(files)
        # The restarted attempt skipped what the killed one had stored.
        assert 20 <= got["instances_already_stored"] < len(files)
        assert got["principal"].startswith("cli:") and got["transaction_id"] == "crash-1"
        assert {o["kind"] for o in got["results"]} >= {"seg", "sr"}
        # Nothing stored twice: one file and one index entry per instance, one job that ran once.
        store = tmp_path / "store"
        source_files = [p for p in store.rglob("*.dcm") if ".incoming" not in p.parts
                        and p.parent.name == str(pydicom.dcmread(files[0], stop_before_pixels=True).SeriesInstanceUID)]
        assert len(source_files) == len(files)
        series = [s for s in api_get(api_port, "/api/series") if s["state"] != "result"]
        assert [s["n_instances"] for s in series] == [len(files)]
        jobs = api_get(api_port, "/api/jobs")
        assert len(jobs) == 1 and jobs[0]["state"] == "done" and jobs[0]["result"]["n_files"] == len(files)
        assert got["job_ids"] == [jobs[0]["id"]]
    finally:
        if node is not None and node.poll() is None:
            node.send_signal(signal.SIGTERM)
            try:
                node.wait(timeout=30)
            except subprocess.TimeoutExpired:
                node.kill()
        orthanc.stop()
