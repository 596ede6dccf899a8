"""InstanceStore.ingest from several associations at once (the file write runs outside the DB lock)."""

from __future__ import annotations

import threading
from pathlib import Path

from pydicom import dcmread
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid
from sqlalchemy import func, select

from node.db.models import Instance, Series
from node.receive.header import parse_header


def _instances(tmp_path: Path, n: int, series_uid: str) -> list[bytes]:
    ds = dcmread(get_testdata_file("MR_small.dcm"))
    ds.SeriesInstanceUID = series_uid
    out = []
    for k in range(n):
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        p = tmp_path / f"{k}.dcm"
        ds.save_as(p, enforce_file_format=True)
        out.append(p.read_bytes())
    return out


def _header(data: bytes):  # type: ignore[no-untyped-def]
    import io

    ds = dcmread(io.BytesIO(data), stop_before_pixels=True)
    return parse_header(data, affected_sop_class=str(ds.SOPClassUID), affected_sop_instance=str(ds.SOPInstanceUID),
                        transfer_syntax=str(ds.file_meta.TransferSyntaxUID))


def _run_all(fns) -> list:  # type: ignore[no-untyped-def]
    results: list = [None] * len(fns)
    barrier = threading.Barrier(len(fns))

    def run(i: int) -> None:
        barrier.wait()
        results[i] = fns[i]()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(fns))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def test_parallel_instances_all_stored_and_counted(core, tmp_path: Path) -> None:
    series = generate_uid()
    datas = _instances(tmp_path, 24, series)
    headers = [_header(d) for d in datas]
    results = _run_all([lambda h=h, d=d: core.store.ingest(h, d, "SCU") for h, d in zip(headers, datas)])
    assert not any(r.duplicate for r in results)
    with core.sessions() as s:
        assert s.scalar(select(func.count()).select_from(Instance)) == 24
        assert s.get(Series, series).n_instances == 24
    for h, d in zip(headers, datas):
        rel = core.files.relpath_for(h.study_uid, h.series_uid, h.sop_instance_uid)
        assert (core.files.root / rel).read_bytes() == d
    assert list(core.files.incoming.iterdir()) == []


def test_same_instance_from_several_peers_stored_once(core, tmp_path: Path) -> None:
    [data] = _instances(tmp_path, 1, generate_uid())
    header = _header(data)
    results = _run_all([lambda: core.store.ingest(header, data, "SCU")] * 6)
    assert sorted(r.duplicate for r in results) == [False] + [True] * 5
    with core.sessions() as s:
        assert s.scalar(select(func.count()).select_from(Instance)) == 1
        assert s.scalar(select(Series.n_instances)) == 1
    assert list(core.files.incoming.iterdir()) == []


def test_directory_removed_behind_the_cache_is_recreated(core, tmp_path: Path) -> None:
    import shutil

    series = generate_uid()
    first, second = _instances(tmp_path, 2, series)
    h1, h2 = _header(first), _header(second)
    core.store.ingest(h1, first, "SCU")
    shutil.rmtree(core.files.root / h1.study_uid)  # e.g. retention pruned the study meanwhile
    assert not core.store.ingest(h2, second, "SCU").duplicate
    assert (core.files.root / core.files.relpath_for(h2.study_uid, h2.series_uid, h2.sop_instance_uid)).exists()
