"""kill -9 while instances stream in, and unreadable files in the store at start-up: the node
comes back, nothing it acknowledged is lost, and it says what it did."""

from __future__ import annotations

import subprocess
from pathlib import Path

from pydicom import dcmread

from tests.conftest import dcmtk_env, which_dcmtk
from tests.reliability import corpus
from tests.reliability.node_process import NodeProcess, echo
from tests.reliability.tally import TALLY


def _storescu(port: int, files: list[Path]) -> list[str]:
    return [which_dcmtk("storescu"), "-v", "-aet", "STORESCU", "-aec", "LGENODE", "127.0.0.1", str(port),
            *map(str, files)]


def test_kill9_during_receive_loses_nothing_acknowledged(tmp_path: Path) -> None:
    datasets = corpus.series(80, description="kill test", size=256)
    files = [corpus.write(ds, tmp_path / f"{i:03d}.dcm") for i, ds in enumerate(datasets)]
    node = NodeProcess(tmp_path / "node").start()
    sender = subprocess.Popen(_storescu(node.port, files), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              env=dcmtk_env(), text=True)
    acked = 0
    assert sender.stdout is not None
    for line in sender.stdout:
        if "Received Store Response (Success)" in line:
            acked += 1
            if acked == 30:
                node.kill9()  # mid-stream: no clean-up, instance 31 is on its way
                break
    sender.wait(timeout=60)
    assert acked == 30

    node.start()
    try:
        stored = node.stored_files()
        for ds in datasets[:acked]:
            present = str(ds.SOPInstanceUID) in stored
            if present:
                assert dcmread(stored[str(ds.SOPInstanceUID)]).PixelData == ds.PixelData  # complete, readable
            TALLY.record(0x0000, 0x0000, stored=present)
        assert all(str(ds.SOPInstanceUID) in stored for ds in datasets[:acked])
        assert not list((node.store / ".incoming").glob("*.part"))
        assert echo(node.port)
        # The PACS re-sends the study (as auto-routing does after a failure): each stored once.
        r = subprocess.run(_storescu(node.port, files), capture_output=True, text=True, env=dcmtk_env(), timeout=300)
        assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
        assert len(node.stored_files()) == len(files)
        assert node.query("SELECT count(*) FROM instances") == [(len(files),)]
        assert node.query(f"SELECT n_instances FROM series WHERE series_uid = '{datasets[0].SeriesInstanceUID}'") \
            == [(len(files),)]
        node.log_records()  # every line (before and after the kill) is one JSON object
    finally:
        node.stop()
    TALLY.scenarios["kill -9 during receive"] = f"ok ({acked} acknowledged before the kill, all kept)"


def test_unreadable_files_in_store_at_startup_are_quarantined(tmp_path: Path) -> None:
    node = NodeProcess(tmp_path / "node")
    good = corpus.mr()
    series_dir = node.store / str(good.StudyInstanceUID) / str(good.SeriesInstanceUID)
    series_dir.mkdir(parents=True)
    # A complete file whose index row was never written (crash after fsync): re-indexed.
    corpus.write(good, series_dir / f"{good.SOPInstanceUID}.dcm")
    full = (series_dir / f"{good.SOPInstanceUID}.dcm").read_bytes()
    bad = {"1.2.3.1.dcm": b"", "1.2.3.2.dcm": b"\0" * 128 + b"DICM" + b"\x02\x00\x10\x00garbage" * 20,
           "1.2.3.3.dcm": full[: len(full) // 2], "1.2.3.4.dcm": b"not DICOM at all\n" * 10}
    for name, data in bad.items():
        (series_dir / name).write_bytes(data)
    node.start()
    try:
        assert echo(node.port)
        quarantined = sorted(p.name for p in (node.store / "quarantine").rglob("*.dcm"))
        assert quarantined == sorted(bad)
        assert node.query("SELECT sop_instance_uid FROM instances") == [(str(good.SOPInstanceUID),)]
        records = [r for r in node.log_records() if r["msg"] == "unreadable file in store moved to quarantine"]
        assert sorted(Path(r["path"]).name for r in records) == sorted(bad) and all(r["reason"] for r in records)
        status, health = node.api("/health")
        assert status == 200 and health["status"] == "ok", health
    finally:
        node.stop()
    TALLY.scenarios["unreadable files in the store at start-up"] = f"ok ({len(bad)} quarantined, node started)"
