from __future__ import annotations

import os
from pathlib import Path

import pytest

from node.store.files import FileStore, StorageFull
from node.store.uids import InvalidUID, is_valid_uid


@pytest.mark.parametrize("uid, ok", [
    ("1.2.840.10008.5.1.4.1.1.4", True), ("0.1", True), ("1.2.03", False), ("1..2", False), ("../etc", False),
    ("1.2/3", False), ("", False), ("1." + "2" * 63, False), ("1.2.3 ", False), (None, False), ("12", False),
])
def test_uid_validation(uid: object, ok: bool) -> None:
    assert is_valid_uid(uid) is ok


def test_path_traversal_refused(tmp_path: Path) -> None:
    fs = FileStore(tmp_path, min_free_mb=0)
    with pytest.raises(InvalidUID, match="SeriesInstanceUID"):
        fs.relpath_for("1.2", "../../x", "1.3")
    assert fs.relpath_for("1.2", "1.3", "1.4") == "1.2/1.3/1.4.dcm"


def test_write_is_atomic_and_idempotent(tmp_path: Path) -> None:
    fs = FileStore(tmp_path, min_free_mb=0)
    a = fs.write("1.2/1.3/1.4.dcm", b"first")
    b = fs.write("1.2/1.3/1.4.dcm", b"second")
    assert a.created and not b.created
    assert (tmp_path / "1.2/1.3/1.4.dcm").read_bytes() == b"first"
    assert list(fs.incoming.iterdir()) == []


def test_full_disk_refused_before_writing(tmp_path: Path) -> None:
    fs = FileStore(tmp_path, min_free_mb=10**9)
    with pytest.raises(StorageFull):
        fs.write("1.2/1.3/1.4.dcm", b"x")
    assert not (tmp_path / "1.2").exists()


def test_write_error_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fs = FileStore(tmp_path, min_free_mb=0)

    def boom(fd: int) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "fsync", boom)
    with pytest.raises(OSError):
        fs.write("1.2/1.3/1.4.dcm", b"data")
    assert list(fs.incoming.iterdir()) == [] and not (tmp_path / "1.2/1.3/1.4.dcm").exists()
