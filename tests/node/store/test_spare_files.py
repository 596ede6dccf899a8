"""FileStore's spare files: empty files created ahead of need, then written and renamed."""

from __future__ import annotations

import time
from pathlib import Path

from node.store.files import FileStore


def _wait_for_spares(fs: FileStore, n: int, timeout: float = 5.0) -> list[Path]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        spares = sorted((fs.root / ".spare").glob("*.part"))
        if len(spares) >= n:
            return spares
        time.sleep(0.01)
    raise AssertionError("spare files were not created")


def test_writes_use_spares_and_stay_durable_and_whole(tmp_path: Path) -> None:
    fs = FileStore(tmp_path, min_free_mb=0, spare_files=4)
    fs.write("1.2/1.3/1.4.dcm", b"first")  # no spare yet: created in .incoming; starts the refill
    spares = _wait_for_spares(fs, 4)
    assert all(p.stat().st_size == 0 for p in spares)
    for k in range(10):
        assert fs.write(f"1.2/1.3/1.{k + 5}.dcm", bytes([k]) * (1000 + k)).created
    for k in range(10):
        assert (tmp_path / f"1.2/1.3/1.{k + 5}.dcm").read_bytes() == bytes([k]) * (1000 + k)
    assert sum(1 for p in spares if not p.exists()) >= 1  # some spares were taken
    assert list(fs.incoming.iterdir()) == []


def test_clean_incoming_removes_spares_and_counts_only_written_ones(tmp_path: Path) -> None:
    fs = FileStore(tmp_path, min_free_mb=0, spare_files=4)
    fs.write("1.2/1.3/1.4.dcm", b"x")
    spares = _wait_for_spares(fs, 4)
    spares[0].write_bytes(b"half written before a crash")
    (fs.incoming / "abc.part").write_bytes(b"partial")
    assert fs.clean_incoming() == 2
    assert list((tmp_path / ".spare").glob("*.part")) == [] and list(fs.incoming.iterdir()) == []
    # Writing goes on after the clean-up (spares listed before it are gone from disk).
    assert fs.write("1.2/1.3/1.5.dcm", b"after").created
    assert (tmp_path / "1.2/1.3/1.5.dcm").read_bytes() == b"after"


def test_spares_disabled(tmp_path: Path) -> None:
    fs = FileStore(tmp_path, min_free_mb=0, spare_files=0)
    fs.write("1.2/1.3/1.4.dcm", b"x")
    time.sleep(0.05)
    assert not (tmp_path / ".spare").exists()
