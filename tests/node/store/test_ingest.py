"""Reconciliation after a crash between the durable write and the index commit."""

from __future__ import annotations

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
        assert s.scalar(select(Series.n_instances)) == 1
    assert list(core.files.incoming.iterdir()) == []
    assert core.store.reconcile() == 0  # idempotent
    with core.sessions() as s:
        assert s.scalar(select(func.count()).select_from(Instance)) == 1
