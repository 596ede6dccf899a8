"""kill -9 while a job runs, then the PACS down and back up: the job runs to the end once, and
every result object reaches the PACS once it is back, with the reason logged meanwhile."""

from __future__ import annotations

import subprocess
import time
from collections import Counter
from pathlib import Path

import pytest
from pydicom import dcmread

from tests.conftest import dcmtk_env, free_port, which_dcmtk
from tests.support.dicom_peers import storescp
from tests.reliability import corpus
from tests.reliability.node_process import NodeProcess, echo
from tests.reliability.tally import TALLY


def _wait(pred, timeout: float, what: str, node: NodeProcess, every: float = 0.05):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = pred()
        if value:
            return value
        if not node.alive:
            raise AssertionError(f"node exited while waiting for {what}: {node.log_tail()}")
        time.sleep(every)
    raise AssertionError(f"timed out waiting for {what}: {node.log_tail()}")


# +uf: a second copy of an instance gets its own file, so duplicates would be seen.
def _storescp(port: int, out: Path) -> subprocess.Popen[str]:
    return storescp(port, out, "+uf")


@pytest.mark.slow
def test_kill9_during_job_then_destination_down_then_up(tmp_path: Path) -> None:
    pacs_port = free_port()
    node = NodeProcess(tmp_path / "node", workers=1, extra=f"""
destinations:
  - {{type: cstore, name: pacs, host: 127.0.0.1, port: {pacs_port}, ae_title: PACS, timeout_seconds: 5}}
delivery:
  max_attempts: 100
  retry_backoff_seconds: 1
  max_backoff_seconds: 2
  sweep_interval_seconds: 0.5
""").start()
    datasets = corpus.series(12, size=256)
    files = [corpus.write(ds, tmp_path / f"{i:03d}.dcm") for i, ds in enumerate(datasets)]
    pacs: subprocess.Popen[bytes] | None = None
    try:
        r = subprocess.run([which_dcmtk("storescu"), "-aet", "STORESCU", "-aec", "LGENODE", "127.0.0.1",
                            str(node.port), *map(str, files)], capture_output=True, text=True, env=dcmtk_env(),
                           timeout=120)
        assert r.returncode == 0, r.stderr
        for ds in datasets:
            TALLY.record(0x0000, 0x0000, stored=str(ds.SOPInstanceUID) in node.stored_files())

        # kill -9 in the middle of the job.
        _wait(lambda: node.query("SELECT id FROM jobs WHERE state = 'running'"), 180, "a running job", node)
        node.kill9()
        node.start()
        assert any(r["msg"] == "re-queued interrupted jobs" for r in node.log_records())
        jobs = _wait(lambda: [j for j in node.query("SELECT id, state, reason FROM jobs")
                              if j[1] in ("done", "failed")], 300, "the job to finish", node, every=0.3)
        assert len(node.query("SELECT id FROM jobs")) == 1  # re-queued, not duplicated
        assert jobs[0][1] == "done", jobs
        TALLY.scenarios["kill -9 during a job"] = "ok (re-queued at start-up, ran to the end once)"

        # The PACS is down: deliveries wait, with the reason recorded and /health degraded.
        rows = _wait(lambda: [row for row in node.query("SELECT attempts, last_error FROM deliveries") if row[0] >= 2],
                     60, "two failed delivery attempts", node, every=0.2)
        assert all("connection refused" in (err or "") for _, err in rows), rows
        status, health = node.api("/health")
        assert status == 200 and health["status"] == "degraded"
        assert any("deliveries failing" in why for why in health["reasons"])
        assert node.api("/ready")[0] == 200  # still receives
        assert any(r["msg"] == "delivery failed; will retry" and "connection refused" in (r.get("error") or "")
                   for r in node.log_records())

        # The PACS comes back: every object arrives, once.
        pacs = _storescp(pacs_port, tmp_path / "pacs")
        _wait(lambda: node.query("SELECT count(*) FROM deliveries WHERE state != 'delivered'") == [(0,)], 60,
              "every delivery", node, every=0.2)
        sent = {uid for (uid,) in node.query("SELECT sop_instance_uid FROM deliveries")}
        received = Counter(str(dcmread(p, stop_before_pixels=True).SOPInstanceUID) for p in (tmp_path / "pacs").iterdir())
        assert set(received) == sent and set(received.values()) == {1}, received
        assert len(sent) >= 2  # SEG + SR (+ PDF)
        status, health = node.api("/health")
        assert health["status"] == "ok", health
        assert echo(node.port)
        node.log_records()
        TALLY.scenarios["destination down, then up"] = f"ok ({len(sent)} objects delivered once after the outage)"
    finally:
        node.stop()
        if pacs is not None:
            pacs.terminate()
            pacs.wait(timeout=10)
