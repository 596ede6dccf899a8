"""Reconciliation after a crash between the durable write and the index commit."""

from __future__ import annotations

import hashlib
from pathlib import Path

from pydicom import dcmread
from pydicom.data import get_testdata_file
from sqlalchemy import func, select

from node.db.models import Instance, Series


def test_reconcile_indexes_orphan_files_and_drops_partials(core) -> None:
    src = Path(get_testdata_file("MR_small.dcm"))
    ds = dcmread(src, stop_before_pixels=True)
    rel = core.files.relpath_for(ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID)
    core.files.write(rel, src.read_bytes())  # written and fsynced, but the process died before indexing
    (core.files.incoming / "abc.part").write_bytes(b"half an instance")
    assert core.store.reconcile() == 1
    with core.sessions() as s:
        inst = s.get(Instance, str(ds.SOPInstanceUID))
        assert inst is not None and inst.path == rel
        assert inst.sha256 == hashlib.sha256(src.read_bytes()).hexdigest()
        assert s.scalar(select(Series.n_instances)) == 1
    assert list(core.files.incoming.iterdir()) == []
    assert core.store.reconcile() == 0  # idempotent
    with core.sessions() as s:
        assert s.scalar(select(func.count()).select_from(Instance)) == 1


def test_reconcile_quarantines_unreadable_files_and_goes_on(core) -> None:
    """D1: an empty file, a DICM preamble with garbage, or a refused dataset in the store no longer
    stops start-up: each is moved to quarantine/ (logged, counted) and the rest is indexed."""
    from node import metrics

    src = Path(get_testdata_file("MR_small.dcm"))
    ds = dcmread(src, stop_before_pixels=True)
    rel = core.files.relpath_for(ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID)
    core.files.write(rel, src.read_bytes())
    series_dir = (core.files.root / rel).parent
    bad = {
        "1.2.3.1.dcm": b"",  # InvalidDicomError
        "1.2.3.2.dcm": b"\0" * 128 + b"DICM" + b"\x02\x00\x10\x00garbage" * 20,  # AttributeError in pydicom
        "1.2.3.3.dcm": b"\0" * 128 + b"DICM" + bytes(range(256)) * 3,
        "1.2.3.4.dcm": src.read_bytes()[:-500],  # truncated: refused by parse_header
    }
    for name, data in bad.items():
        (series_dir / name).write_bytes(data)
    before = metrics.QUARANTINED_FILES._value.get()
    assert core.store.reconcile() == 1
    assert metrics.QUARANTINED_FILES._value.get() == before + len(bad)
    quarantined = sorted(p.name for p in (core.files.root / "quarantine").rglob("*.dcm"))
    assert quarantined == sorted(bad)
    assert sorted(p.name for p in series_dir.iterdir()) == [f"{ds.SOPInstanceUID}.dcm"]
    with core.sessions() as s:
        assert s.scalar(select(func.count()).select_from(Instance)) == 1
    assert core.store.reconcile() == 0  # quarantine/ is not read as part of the store
