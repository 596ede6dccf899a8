"""Disk below the threshold and many concurrent associations against `lgenode serve`."""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

from pydicom.uid import ExplicitVRLittleEndian as EX

from tests.reliability import corpus
from tests.reliability.node_process import NodeProcess, echo
from tests.reliability.tally import TALLY
from tests.support.raw_scu import RawStoreSCU


def test_disk_below_threshold_refuses_a700_and_reports_it(tmp_path: Path) -> None:
    free_mb = shutil.disk_usage(tmp_path).free // (1024 * 1024)
    node = NodeProcess(tmp_path / "node", min_free_mb=free_mb + 10_000).start()
    try:
        datasets = [corpus.mr() for _ in range(10)]
        with RawStoreSCU(node.port, [(corpus.MR, [EX])]) as scu:
            got = [scu.store(corpus.encoded(ds, EX), sop_class=corpus.MR, sop_instance=str(ds.SOPInstanceUID),
                             transfer_syntax=EX) for ds in datasets]
        for status in got:
            TALLY.record(0xA700, status)
        assert got == [0xA700] * len(datasets)
        assert node.stored_files() == {}
        assert echo(node.port)
        status, ready = node.api("/ready")
        assert status == 503 and any("min_free_mb" in why for why in ready["reasons"])
        status, health = node.api("/health")
        assert status == 200 and health["status"] == "degraded"
        refused = {r["sop_instance_uid"] for r in node.log_records()
                   if r["msg"] == "instance refused" and r["status"] == "0xA700" and "storage full" in r["reason"]}
        assert refused == {str(ds.SOPInstanceUID) for ds in datasets}
    finally:
        node.stop()
    TALLY.scenarios["disk below storage.min_free_mb"] = "ok (0xA700, /ready 503, /health degraded)"


def test_concurrent_associations_store_everything(tmp_path: Path) -> None:
    n_assoc, per_assoc = 12, 20
    node = NodeProcess(tmp_path / "node").start()
    batches = [[corpus.mr() for _ in range(per_assoc)] for _ in range(n_assoc)]
    encoded = [[corpus.encoded(ds, EX) for ds in b] for b in batches]
    results: list[list[int | None]] = [[] for _ in range(n_assoc)]
    errors: list[BaseException] = []

    def send(i: int) -> None:
        try:
            # A generous DIMSE timeout: CI machines are shared and slow, and this test is about losses.
            with RawStoreSCU(node.port, [(corpus.MR, [EX])], dimse_timeout=120) as scu:
                for ds, data in zip(batches[i], encoded[i]):
                    results[i].append(scu.store(data, sop_class=corpus.MR, sop_instance=str(ds.SOPInstanceUID),
                                                transfer_syntax=EX))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=send, args=(i,)) for i in range(n_assoc)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=300)
        assert not errors, errors
        stored = node.stored_files()
        for b, res in zip(batches, results):
            for ds, status in zip(b, res):
                TALLY.record(0x0000, status, stored=str(ds.SOPInstanceUID) in stored)
        assert [len(r) for r in results] == [per_assoc] * n_assoc
        assert all(status == 0 for r in results for status in r), [(len(stored), r) for r in results]
        assert len(stored) == n_assoc * per_assoc
        assert node.query("SELECT count(*) FROM instances") == [(n_assoc * per_assoc,)]
        assert echo(node.port)
    finally:
        node.stop()
    TALLY.scenarios["concurrent associations"] = f"ok ({n_assoc} x {per_assoc} instances, all stored)"
