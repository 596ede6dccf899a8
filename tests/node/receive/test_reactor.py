"""The event-driven association reactor (node/receive/reactor.py) against real peers."""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydicom import dcmread
from pydicom.data import get_testdata_file
from pydicom.uid import ExplicitVRLittleEndian, generate_uid
from pynetdicom import AE, evt
from pynetdicom.association import Association
from pynetdicom.sop_class import MRImageStorage, Verification  # type: ignore[attr-defined]

from node.receive import reactor
from tests.conftest import dataset_bytes, dcmtk_env, which_dcmtk


class Recorder:
    """A C-STORE handler that keeps what it was given, and in which thread."""

    def __init__(self, status: int = 0x0000, fail_on: int | None = None) -> None:
        self.status = status
        self.fail_on = fail_on
        self.datasets: list[bytes] = []
        self.threads: list[str] = []
        self.assoc_types: list[type] = []
        self.dimse_recv_handlers: list[Any] = []
        self.lock = threading.Lock()

    def __call__(self, event: evt.Event) -> int:
        with self.lock:
            self.threads.append(threading.current_thread().name)
            self.assoc_types.append(type(event.assoc))
            self.dimse_recv_handlers.append(event.assoc.get_handlers(evt.EVT_DIMSE_RECV))
            self.datasets.append(event.encoded_dataset(include_meta=False))
            n = len(self.datasets)
        if self.fail_on is not None and n == self.fail_on:
            raise RuntimeError("handler failure (test)")
        return self.status


def _ae() -> AE:
    ae = AE(ae_title="REACTOR")
    ae.add_supported_context(Verification)
    ae.add_supported_context(MRImageStorage, [ExplicitVRLittleEndian])
    ae.network_timeout = 5
    return ae


@pytest.fixture
def serve() -> Iterator[Any]:
    servers = []

    def start(handler: Recorder, ae: AE | None = None) -> Any:
        server = reactor.make_server(ae or _ae(), ("127.0.0.1", 0), [(evt.EVT_C_STORE, handler)])
        servers.append(server)
        return server

    yield start
    for s in servers:
        s.shutdown()


def _series(tmp_path: Path, n: int) -> list[Path]:
    ds = dcmread(get_testdata_file("MR_small.dcm"))
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    if (0xFFFC, 0xFFFC) in ds:
        del ds[0xFFFC, 0xFFFC]  # storescu drops trailing padding when it sends
    out = []
    for k in range(n):
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.InstanceNumber = k + 1
        p = tmp_path / f"{k:03d}.dcm"
        ds.save_as(p, enforce_file_format=True)
        out.append(p)
    return out


def _threads_of(server: Any) -> list[threading.Thread]:
    return [t for t in threading.enumerate() if getattr(t, "_server", None) is server]


def _wait_until(pred, timeout: float = 5.0) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.02)
    return pred()


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd")) if os.path.isdir("/proc/self/fd") else 0


def _send_pynetdicom(port: int, files: list[Path]) -> list[int]:
    ae = AE(ae_title="SCU")
    ae.add_requested_context(MRImageStorage, [ExplicitVRLittleEndian])
    assoc = ae.associate("127.0.0.1", port, ae_title="REACTOR")
    assert assoc.is_established
    try:
        return [int(assoc.send_c_store(dcmread(f)).Status) for f in files]
    finally:
        assoc.release()


def test_dcmtk_stream_stored_in_order_and_threads_end(serve, tmp_path: Path) -> None:
    files = _series(tmp_path, 30)
    handler = Recorder()
    server = serve(handler)
    fds_before = _open_fds()
    r = subprocess.run([which_dcmtk("storescu"), "-aet", "STORESCU", "-aec", "REACTOR", "127.0.0.1",
                        str(server.server_address[1]), *map(str, files)],
                       capture_output=True, text=True, env=dcmtk_env(), timeout=60)
    assert r.returncode == 0, r.stderr
    # Every dataset arrived whole and in the order sent.
    assert handler.datasets == [dataset_bytes(f) for f in files]
    # The association and its DUL thread end after the release, and leave no descriptors.
    assert _wait_until(lambda: not _threads_of(server) and not any(
        isinstance(t, reactor.EventDrivenDUL) for t in threading.enumerate()))
    assert _open_fds() <= fds_before


def test_requests_served_in_dul_thread_unless_disabled(serve, tmp_path: Path, monkeypatch) -> None:
    files = _series(tmp_path, 3)
    handler = Recorder()
    server = serve(handler)
    assert _send_pynetdicom(server.server_address[1], files) == [0, 0, 0]
    assert set(handler.assoc_types) == {reactor.EventDrivenAssociation}
    assert not any(name.startswith("AcceptorThread") for name in handler.threads)

    monkeypatch.setattr(reactor, "SERVE_INLINE", False)
    assert _send_pynetdicom(server.server_address[1], files) == [0, 0, 0]
    assert all(name.startswith("AcceptorThread") for name in handler.threads[3:])


def test_handler_exception_answers_failure_and_association_goes_on(serve, tmp_path: Path) -> None:
    files = _series(tmp_path, 3)
    server = serve(Recorder(fail_on=2))
    # pynetdicom turns a handler exception into 0xC211; the next request is served normally.
    assert _send_pynetdicom(server.server_address[1], files) == [0, 0xC211, 0]


def test_peer_abort_ends_association_and_server_keeps_serving(serve, tmp_path: Path) -> None:
    files = _series(tmp_path, 2)
    handler = Recorder()
    server = serve(handler)
    ae = AE(ae_title="SCU")
    ae.add_requested_context(MRImageStorage, [ExplicitVRLittleEndian])
    assoc = ae.associate("127.0.0.1", server.server_address[1], ae_title="REACTOR")
    assert int(assoc.send_c_store(dcmread(files[0])).Status) == 0
    assoc.abort()
    assert _wait_until(lambda: not _threads_of(server))
    assert _send_pynetdicom(server.server_address[1], files[1:]) == [0]
    assert len(handler.datasets) == 2


def test_network_timeout_still_enforced(serve) -> None:
    ae = _ae()
    ae.network_timeout = 0.3
    server = serve(Recorder(), ae)
    scu = AE(ae_title="SCU")
    scu.add_requested_context(Verification)
    assoc = scu.associate("127.0.0.1", server.server_address[1], ae_title="REACTOR")
    assert assoc.is_established
    # An idle peer is aborted by the acceptor once the network timeout passes.
    assert _wait_until(lambda: assoc.is_aborted, timeout=5)
    assert _wait_until(lambda: not _threads_of(server))


def test_echo_and_release_are_prompt(serve) -> None:
    server = serve(Recorder())
    t0 = time.perf_counter()
    for _ in range(5):
        r = subprocess.run([which_dcmtk("echoscu"), "-aet", "ECHOSCU", "-aec", "REACTOR", "127.0.0.1",
                            str(server.server_address[1])], capture_output=True, text=True, env=dcmtk_env(),
                           timeout=30)
        assert r.returncode == 0, r.stderr
    # No wait on the POLL_SECONDS fallback anywhere in associate/echo/release.
    assert (time.perf_counter() - t0) / 5 < 10 * reactor.POLL_SECONDS


def test_logging_handlers_dropped_only_when_their_logger_is_silent(serve, tmp_path: Path) -> None:
    files = _series(tmp_path, 1)
    handler = Recorder()
    server = serve(handler)
    logger = logging.getLogger("pynetdicom")
    old = logger.level
    try:
        logger.setLevel(logging.WARNING)
        _send_pynetdicom(server.server_address[1], files)
        logger.setLevel(logging.INFO)
        _send_pynetdicom(server.server_address[1], files)
    finally:
        logger.setLevel(old)
    silent, verbose = handler.dimse_recv_handlers
    assert silent == []
    assert any(h is reactor.standard_dimse_recv_handler for h, _ in verbose)


def test_unsupported_pynetdicom_falls_back_to_stock(serve, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(reactor, "is_supported", lambda version="": False)
    handler = Recorder()
    server = serve(handler)
    assert _send_pynetdicom(server.server_address[1], _series(tmp_path, 1)) == [0]
    assert handler.assoc_types == [Association]


@pytest.mark.parametrize("preallocate_max", [reactor.FastRecvSocket.PREALLOCATE_MAX, 1000])
def test_fast_recv_reads_exact_lengths_and_short_reads(preallocate_max: int) -> None:
    a, b = socket.socketpair()
    try:
        # Only recv() is under test: an instance without pynetdicom's association set-up.
        s = object.__new__(reactor.FastRecvSocket)
        s.socket = a
        s.PREALLOCATE_MAX = preallocate_max  # 1000: the claimed length is "too big", read as it arrives
        payload = os.urandom(300_000)
        sender = threading.Thread(target=lambda: [b.sendall(payload[i:i + 7000]) for i in range(0, len(payload), 7000)])
        sender.start()
        got = s.recv(6) + s.recv(len(payload) - 6)
        sender.join()
        assert bytes(got) == payload
        b.sendall(b"abc")
        b.close()
        assert bytes(s.recv(10)) == b"abc"  # peer closed: what arrived, as pynetdicom returns it
    finally:
        a.close()
