"""`lgenode serve` as a real process for the reliability suite: start, C-ECHO, kill -9, restart,
read its JSON log and its API."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from pynetdicom import AE
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

from tests.conftest import free_port

LGENODE = str(Path(sys.executable).with_name("lgenode"))


def echo(port: int, *, calling_ae: str = "TESTSCU", timeout: float = 10.0) -> bool:
    """C-ECHO with pynetdicom: True when the node answered Success."""
    ae = AE(ae_title=calling_ae)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = timeout
    ae.add_requested_context(Verification)
    assoc = ae.associate("127.0.0.1", port, ae_title="LGENODE")
    if not assoc.is_established:
        return False
    try:
        status = assoc.send_c_echo()
        return bool(status) and int(status.Status) == 0
    finally:
        assoc.release()


class NodeProcess:
    def __init__(self, workdir: Path, extra: str = "", *, workers: int = 0, min_free_mb: int = 1) -> None:
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.port, self.api_port = free_port(), free_port()
        self.config = workdir / "node.yaml"
        # The suite's peers: TESTSCU (pynetdicom), STORESCU/ECHOSCU (DCMTK); storage fsync stays on.
        self.config.write_text(f"""
dicom:
  port: {self.port}
  max_associations: 16
  allowed_peers: [{{ae_title: TESTSCU}}, {{ae_title: STORESCU}}, {{ae_title: ECHOSCU}}]
storage:
  root: store
  min_free_mb: {min_free_mb}
database:
  url: sqlite:///node.db
series:
  idle_seconds: 1
  sweep_interval_seconds: 0.3
jobs:
  workers: {workers}
  poll_interval_seconds: 0.2
  retry_backoff_seconds: 0.5
api:
  port: {self.api_port}
logging:
  level: INFO
{extra}
""")
        self.log_path = workdir / "node.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def store(self) -> Path:
        return self.workdir / "store"

    def start(self, timeout: float = 90.0) -> "NodeProcess":
        env = dict(os.environ)
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen([LGENODE, "serve", "--config", str(self.config)], stdout=log,
                                         stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"lgenode serve exited ({self.proc.returncode}): {self.log_tail()}")
            if echo(self.port, timeout=2):
                self._wait_api(deadline)
                return self
            time.sleep(0.2)
        self.kill9()
        raise AssertionError(f"lgenode serve did not answer C-ECHO: {self.log_tail()}")

    def _wait_api(self, deadline: float) -> None:
        while time.monotonic() < deadline:
            try:
                self.api("/health")
                return
            except (urllib.error.URLError, ConnectionError):
                time.sleep(0.1)

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill9(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill9()

    def api(self, path: str) -> tuple[int, Any]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.api_port}{path}", timeout=10) as r:
                body = r.read()
                return r.status, json.loads(body) if r.headers.get_content_type() == "application/json" else body.decode()
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())

    def log_tail(self, n: int = 3000) -> str:
        return self.log_path.read_text(errors="replace")[-n:] if self.log_path.exists() else ""

    def log_records(self) -> list[dict[str, Any]]:
        """Every line of the log as JSON: a line that is not one JSON object fails the test."""
        records = []
        for i, line in enumerate(self.log_path.read_text().splitlines()):
            if line.strip():
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError:
                    raise AssertionError(f"log line {i + 1} is not one JSON object: {line[:300]!r}") from None
        return records

    def query(self, sql: str) -> list[tuple[Any, ...]]:
        with sqlite3.connect(self.workdir / "node.db", timeout=30) as db:
            return db.execute(sql).fetchall()

    def stored_files(self) -> dict[str, Path]:
        """SOP Instance UID (file name) -> file, for every instance file in the store."""
        return {p.stem: p for p in self.store.rglob("*.dcm")
                if ".incoming" not in p.parts and "quarantine" not in p.relative_to(self.store).parts}
