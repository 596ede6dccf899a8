"""C-STORE SCU against real peers: DCMTK storescp and Orthanc."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pydicom
import pytest

from node.deliver import CStoreDestination, deliver
from tests.support.orthanc import free_port, needs_orthanc
from tests.support.require import missing

STORESCP = "/usr/bin/storescp"  # DCMTK's, not the one pynetdicom installs in the venv


@pytest.fixture
def storescp(tmp_path):
    if not Path(STORESCP).is_file():
        missing("dcmtk", "DCMTK storescp not installed")
    out = tmp_path / "received"
    out.mkdir()
    port = free_port()
    proc = subprocess.Popen([STORESCP, "-aet", "DCMTKSCP", "-od", str(out), "+xa", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            env={**os.environ, "TCP_NODELAY": "1"})
    deadline = time.monotonic() + 10
    import socket

    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                break
        time.sleep(0.05)
    try:
        yield port, out
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.mark.dcmtk
def test_send_seg_sr_pdf_and_mr_to_dcmtk(storescp, deliver_case) -> None:
    port, out = storescp
    series, objects = deliver_case
    sent = [*series.datasets, *objects]
    results = deliver(sent, CStoreDestination("127.0.0.1", port, "DCMTKSCP"))
    assert [r.sop_instance_uid for r in results] == [str(ds.SOPInstanceUID) for ds in sent]
    assert all(r.ok and r.status == 0 for r in results), results
    received = {str(ds.SOPInstanceUID): ds for ds in
                (pydicom.dcmread(p) for p in out.iterdir() if p.is_file())}
    assert set(received) == {str(ds.SOPInstanceUID) for ds in sent}
    seg = objects[0]
    assert received[str(seg.SOPInstanceUID)].PixelData == seg.PixelData
    pdf = objects[2]
    assert bytes(received[str(pdf.SOPInstanceUID)].EncapsulatedDocument).startswith(b"%PDF")


@pytest.mark.dcmtk
def test_send_files_from_disk(storescp, deliver_case, tmp_path) -> None:
    port, out = storescp
    _, objects = deliver_case
    paths = []
    for i, ds in enumerate(objects):
        p = tmp_path / f"obj{i}.dcm"
        ds.save_as(p, enforce_file_format=True)
        paths.append(p)
    results = deliver(paths, CStoreDestination("127.0.0.1", port, "DCMTKSCP"))
    assert all(r.ok for r in results)
    assert len([p for p in out.iterdir() if p.is_file()]) == len(objects)


def test_peer_down_fails_every_object_without_raising(deliver_case) -> None:
    _, objects = deliver_case
    dest = CStoreDestination("127.0.0.1", free_port(), "NOBODY", acse_timeout_s=3,
                             network_timeout_s=3)
    results = deliver(objects, dest)
    assert len(results) == len(objects)
    assert not any(r.ok for r in results)
    assert all(r.status is None and r.detail for r in results)


@needs_orthanc
@pytest.mark.orthanc
def test_orthanc_accepts_the_node_and_rejects_a_stranger(orthanc, deliver_case) -> None:
    _, objects = deliver_case
    ok = deliver(objects, CStoreDestination("127.0.0.1", orthanc.dicom_port, orthanc.aet,
                                            calling_ae_title="LGENODE"))
    assert all(r.ok for r in ok)
    assert len(orthanc.instances()) == len(objects)
    again = deliver(objects, CStoreDestination("127.0.0.1", orthanc.dicom_port, orthanc.aet,
                                               calling_ae_title="LGENODE"))
    assert all(r.ok for r in again)
    assert len(orthanc.instances()) == len(objects)  # same UIDs: no second copy
    stranger = deliver(objects, CStoreDestination("127.0.0.1", orthanc.dicom_port, orthanc.aet,
                                                  calling_ae_title="STRANGER"))
    assert not any(r.ok for r in stranger)
    assert "association" in stranger[0].detail
