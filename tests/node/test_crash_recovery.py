"""SIGKILL the node while a study streams in; restart; nothing acknowledged is lost and the
series' job runs exactly once. Uses the real `lgenode serve` process and DCMTK storescu."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from pydicom import dcmread

from tests.conftest import dcmtk_env, free_port, which_dcmtk

LGENODE = str(Path(sys.executable).with_name("lgenode"))
API_KEY = "crash-test-key-0123456789"  # the API requires credentials; configured by its SHA-256 below


def write_config(tmp: Path, dicom_port: int, api_port: int) -> Path:
    cfg = tmp / "node.yaml"
    cfg.write_text(f"""
dicom:
  port: {dicom_port}
  allowed_peers: [{{ae_title: STORESCU}}]
storage:
  root: store
  min_free_mb: 1
database:
  url: sqlite:///node.db
series:
  idle_seconds: 5
  sweep_interval_seconds: 0.3
selection:
  max_slices: 200
jobs:
  poll_interval_seconds: 0.2
api:
  port: {api_port}
  auth:
    api_keys: [{{name: crash-test, key_sha256: "{hashlib.sha256(API_KEY.encode()).hexdigest()}", roles: [read]}}]
logging:
  level: INFO
""")
    return cfg


def start_node(cfg: Path, log: Path, dicom_port: int) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen([LGENODE, "serve", "--config", str(cfg)], stdout=open(log, "ab"), stderr=subprocess.STDOUT)
    deadline = time.time() + 60
    while time.time() < deadline:
        r = subprocess.run([which_dcmtk("echoscu"), "-aet", "STORESCU", "-aec", "LGENODE", "127.0.0.1", str(dicom_port)],
                           capture_output=True, env=dcmtk_env())
        if r.returncode == 0:
            return proc
        if proc.poll() is not None:
            raise AssertionError(f"node exited: {log.read_text()[-2000:]}")
        time.sleep(0.2)
    proc.kill()
    raise AssertionError("node did not start")


def api_get(port: int, path: str) -> object:
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers={"Authorization": f"Bearer {API_KEY}"})
    with urllib.request.urlopen(req, timeout=5) as r:
        return json.loads(r.read())


@pytest.mark.slow
def test_sigkill_while_streaming_loses_nothing_and_job_runs_once(tmp_path: Path) -> None:
    from dicomstudy.synthetic import write_synthetic_long_series

    files = write_synthetic_long_series(160, tmp_path / "series", rows=256, cols=256, seed=3)
    files = sorted(files)
    dicom_port, api_port = free_port(), free_port()
    cfg = write_config(tmp_path, dicom_port, api_port)
    log = tmp_path / "node.log"
    node = start_node(cfg, log, dicom_port)

    sender = subprocess.Popen([which_dcmtk("storescu"), "-v", "-aec", "LGENODE", "127.0.0.1", str(dicom_port),
                               *map(str, files)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=dcmtk_env(),
                              text=True)
    acked = 0
    assert sender.stdout is not None
    for line in sender.stdout:
        if "Received Store Response (Success)" in line:
            acked += 1
            if acked == 40:
                node.send_signal(signal.SIGKILL)  # mid-stream, no chance to clean up
                break
    sender.wait(timeout=60)
    node.wait(timeout=30)
    assert acked == 40

    # Restart: every acknowledged instance is there and readable in full.
    node = start_node(cfg, log, dicom_port)
    try:
        store = tmp_path / "store"
        stored = {dcmread(p).SOPInstanceUID for p in store.rglob("*.dcm") if ".incoming" not in p.parts}
        sent_acked = [dcmread(f, stop_before_pixels=True).SOPInstanceUID for f in files[:acked]]
        assert set(sent_acked) <= stored
        assert not list((store / ".incoming").glob("*.part"))  # partial files were cleaned up

        # The PACS re-sends the whole study (as auto-routing does after a failure).
        r = subprocess.run([which_dcmtk("storescu"), "-aec", "LGENODE", "127.0.0.1", str(dicom_port), *map(str, files)],
                           capture_output=True, text=True, env=dcmtk_env(), timeout=300)
        assert r.returncode == 0, r.stderr[-2000:]
        deadline = time.time() + 90
        jobs: list[dict] = []
        while time.time() < deadline:
            jobs = api_get(api_port, "/api/jobs")  # type: ignore[assignment]
            if jobs and all(j["state"] in ("done", "failed") for j in jobs):
                break
            time.sleep(0.5)
        assert len(jobs) == 1, jobs
        assert jobs[0]["state"] == "done" and jobs[0]["attempts"] == 1, jobs[0]
        assert jobs[0]["result"]["n_files"] == len(files)
        assert jobs[0]["result"]["geometry"]["shape"][0] == len(files)
        series = api_get(api_port, "/api/series")
        assert [s["n_instances"] for s in series if s["state"] != "result"] == [len(files)]  # type: ignore[index]
        # The job's results (SEG, SR, PDF) are in the node's store as their own series.
        assert sorted(s["n_instances"] for s in series if s["state"] == "result") == [1, 1, 1]  # type: ignore[index]
        health = api_get(api_port, "/health")
        assert health["status"] == "ok"  # type: ignore[index]
    finally:
        node.send_signal(signal.SIGTERM)
        try:
            node.wait(timeout=30)
        except subprocess.TimeoutExpired:
            node.kill()
    # Structured logs, and no patient data in them.
    text = log.read_text()
    first = next(line for line in text.splitlines() if line.startswith("{"))
    assert json.loads(first)["level"] in ("INFO", "WARNING")
    patient_name = str(dcmread(files[0], stop_before_pixels=True).get("PatientName", "") or "")
    if patient_name:
        assert patient_name not in text
    assert os.path.exists(tmp_path / "node.db")
