"""Event-driven association reactors for the Storage SCP (pynetdicom acceptor side).

Why: pynetdicom 3.0 runs two polling loops per association. The DUL thread sleeps
``_run_loop_delay`` (1 ms) whenever it finds nothing to do, and the association thread sleeps
a fixed 1 ms before each look at the DIMSE queue; each request is decoded in the DUL thread,
handed to the association thread, and its response handed back. On a C-STORE stream from a
synchronous peer (DCMTK storescu waits for each response) every instance pays those sleeps
and two thread wake-ups, and on a busy machine the wake-ups are the slow part.

What, on the same pynetdicom objects (state machine, PDU and DIMSE code untouched):

* the DUL waits in ``select()`` on the peer socket plus a wake-up socketpair written when
  another thread queues something for it, instead of sleeping;
* once the association is established, the DUL thread serves each decoded request itself
  (``SERVE_INLINE``); the association thread waits on an Event for the ACSE side (release,
  abort) and checks the timers (ARTIM, network timeout, DUL liveness) at least every
  ``POLL_SECONDS``, as pynetdicom's loop did every millisecond;
* P-DATA is read with ``recv_into`` one buffer instead of 4 KiB reads appended to a bytearray;
* pynetdicom's per-PDU logging handlers are unbound when their logger is disabled anyway.

Measured on this project's shared 2-core machine, DCMTK storescu sending 500 MR instances
(256x256) to a handler that only builds the encoded dataset: 550-680 images/s against 270-295
for the stock reactor, and 1.2-1.5 ms of CPU per instance against 1.9-2.2 ms.

Robustness: the two loops below are copies of pynetdicom's, checked identical in 3.0.0 to
3.0.4, with only the waits (and the serving thread) changed. On any other version
`make_server` falls back to pynetdicom's stock classes (correct, just slower), so an upgrade
cannot silently break the receiver; re-check the copied loops before widening
``SUPPORTED_VERSIONS``. Only acceptor associations are adopted; the node's SCU is unchanged.
"""

from __future__ import annotations

import contextvars
import logging
import queue
import select
import socket
import ssl
import threading
from collections.abc import Callable
from typing import Any, cast

import pynetdicom
from pynetdicom import _config, evt
from pynetdicom._handlers import (
    standard_dimse_recv_handler,
    standard_dimse_sent_handler,
    standard_pdu_recv_handler,
    standard_pdu_sent_handler,
)
from pynetdicom.association import Association
from pynetdicom.dul import DULServiceProvider
from pynetdicom.pdu import A_ABORT_RQ
from pynetdicom.transport import AssociationSocket, RequestHandler, ThreadedAssociationServer
from pynetdicom.utils import make_target

from node.security.tls import DeferredHandshakeServer, HandshakeFailure

LOGGER = logging.getLogger(__name__)

SUPPORTED_VERSIONS = ("3.0.",)
# Upper bound on a wait: how late a timer (ARTIM, network timeout) or a dead DUL is noticed.
POLL_SECONDS = 0.05
# Serve DIMSE requests in the DUL thread (see EventDrivenAssociation); False: in the
# association thread, as pynetdicom does.
SERVE_INLINE = True


def is_supported(version: str = pynetdicom.__version__) -> bool:
    return version.startswith(SUPPORTED_VERSIONS)


class _NotifyingQueue(queue.Queue):  # type: ignore[type-arg]
    """A Queue that calls ``notify`` after each put (under the queue's lock, so the item is
    visible before the waiter wakes)."""

    def __init__(self, notify: Callable[[], None]) -> None:
        super().__init__()
        self._notify = notify

    def _put(self, item: Any) -> None:
        super()._put(item)
        self._notify()


class FastRecvSocket(AssociationSocket):
    """``recv`` into one preallocated buffer instead of 4 KiB reads appended to a bytearray
    (a 256 KiB P-DATA PDU was 64 reads and as many reallocations)."""

    # A PDU's length is the peer's claim: above this, grow as data arrives (pynetdicom's way)
    # rather than allocate up front what a broken or hostile peer announces (up to 4 GiB).
    PREALLOCATE_MAX = 4 * 1024 * 1024

    def recv(self, nr_bytes: int) -> bytearray:
        if nr_bytes > self.PREALLOCATE_MAX:
            return super().recv(nr_bytes)
        sock = cast(socket.socket, self.socket)
        buf = bytearray(nr_bytes)
        nr_read = 0
        with memoryview(buf) as view:
            while nr_read < nr_bytes:
                n = sock.recv_into(view[nr_read:], nr_bytes - nr_read)
                if not n:
                    break  # connection closed: return what arrived, as pynetdicom does
                nr_read += n
        if nr_read < nr_bytes:
            del buf[nr_read:]
        return buf


class EventDrivenDUL(DULServiceProvider):
    """The DUL reactor, waiting in select() instead of sleeping."""

    def _install_wakeup(self) -> None:
        self._context = contextvars.copy_context() if _config.PASS_CONTEXTVARS else None
        self._kill_thread = bool(self.__dict__.pop("_kill_thread", False))  # now the property below
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        # Producers other than this thread: the association thread (responses, release,
        # abort) puts primitives on to_provider_queue; rarely events on event_queue.
        for name in ("to_provider_queue", "event_queue"):
            old = getattr(self, name)
            new = _NotifyingQueue(self._wake)
            while True:  # (empty before the thread starts; kept for safety)
                try:
                    new.put(old.get_nowait())
                except queue.Empty:
                    break
            setattr(self, name, new)

    def _wake(self) -> None:
        if threading.get_ident() == self.ident:
            return  # this thread re-checks its queues before it waits again
        try:
            self._wake_w.send(b"\0")
        except (BlockingIOError, OSError):
            pass  # buffer full (a wake-up is pending anyway) or already closed

    # ``kill_dul``/``stop_dul`` set this flag from the association thread; wake us to see it.
    @property  # type: ignore[override]
    def _kill_thread(self) -> bool:
        return bool(self.__dict__.get("_kill_thread_flag", False))

    @_kill_thread.setter
    def _kill_thread(self, value: bool) -> None:
        self.__dict__["_kill_thread_flag"] = value
        if value and "_wake_w" in self.__dict__:
            self._wake()

    def _wait_for_work(self) -> None:
        rlist: list[Any] = [self._wake_r]
        sock = self.socket
        raw = sock.socket if sock is not None else None
        if raw is not None and raw.fileno() >= 0:
            pending = getattr(raw, "pending", None)  # TLS: decrypted bytes select() cannot see
            if pending is not None and pending() > 0:
                return
            rlist.append(raw)
        try:
            ready, _, _ = select.select(rlist, [], [], POLL_SECONDS)
        except (OSError, ValueError):
            return  # socket closed under us: the loop's transport check reports it
        if self._wake_r in ready:
            try:
                while self._wake_r.recv(4096):
                    pass
            except (BlockingIOError, OSError):
                pass

    def _hard_abort(self) -> None:
        """pynetdicom's reaction to an exception in the DUL loop: bypass the state machine,
        send an A-ABORT and stop both reactors."""
        abort_pdu = A_ABORT_RQ()
        abort_pdu.source = 0x02
        abort_pdu.reason_diagnostic = 0x00
        if self.socket is not None:
            self.socket.send(abort_pdu.encode())
        self.assoc.is_aborted = True
        self.assoc.is_established = False
        self.assoc._kill = True
        self._kill_thread = True

    def _serve_queued_message(self) -> bool:
        """Serve a decoded DIMSE request in this thread (see EventDrivenAssociation)."""
        assoc = cast("EventDrivenAssociation", self.assoc)
        if not assoc._serve_inline:
            return False
        context_id, msg = assoc.dimse.get_msg(block=False)
        if msg is None:
            return False
        try:
            assoc._serve_request(msg, cast(int, context_id))
        except Exception as exc:
            # In pynetdicom's own reactor this exception would end the association thread.
            LOGGER.error("Exception while serving a request, aborting association")
            LOGGER.exception(exc)
            self._hard_abort()
        return True

    def run(self) -> None:
        # Thread.__init__ bound the stock run_reactor as the thread's target before this
        # class was adopted, so run ours explicitly (in a copied context if pynetdicom is
        # configured to pass contextvars to its threads, as make_target would).
        if self._context is not None:
            self._context.run(self.run_reactor)
        else:
            self.run_reactor()

    def run_reactor(self) -> None:
        """pynetdicom 3.0.x ``DULServiceProvider.run_reactor`` with ``time.sleep`` replaced by
        ``_wait_for_work``."""
        try:
            self._run_reactor_loop()
        finally:
            self._wake_r.close()
            self._wake_w.close()

    def _run_reactor_loop(self) -> None:
        self._idle_timer.start()
        self.socket = cast("AssociationSocket", self.socket)
        sleep = False

        while True:
            if not self.assoc._dul_ready.is_set():
                self.assoc._dul_ready.set()
                sleep = True

            if sleep:
                self._wait_for_work()

            if self._kill_thread:
                break

            if self.artim_timer.expired:
                self.event_queue.put("Evt18")

            if self._serve_queued_message():
                # Loop without waiting: the response is now queued for sending.
                sleep = False
                continue

            try:
                if self._process_recv_primitive():
                    pass
                elif self._is_transport_event():
                    self._idle_timer.restart()
            except Exception as exc:
                LOGGER.error("Exception in DUL.run(), aborting association")
                LOGGER.exception(exc)
                self._hard_abort()
                return

            try:
                event = self.event_queue.get(block=False)
            except queue.Empty:
                sleep = True
                continue

            self.state_machine.do_action(event)
            sleep = False


class EventDrivenAssociation(Association):
    """The acceptor's association reactor, waiting on an Event instead of sleeping 1 ms.

    Once the association is established, DIMSE requests are served by the DUL thread itself,
    right after it decodes them (``_serve_inline``), instead of being handed to this thread
    and the response handed back: two thread wake-ups per request fewer, which on a loaded
    machine was a large share of the per-instance latency. This is safe for a pure Storage
    SCP: its handlers never wait on the DUL (they do not send requests over the association);
    a peer's A-ABORT or A-RELEASE is read when the handler returns, as it would be answered
    only then anyway. This thread keeps the ACSE side: release, abort, timeouts.
    """

    def _install_wakeup(self) -> None:
        self._work = threading.Event()
        self._serve_inline = False
        # The DUL thread puts decoded DIMSE messages and ACSE primitives (release, abort) here.
        self.dimse.msg_queue = _NotifyingQueue(self._on_dimse_message)
        self.dul.to_user_queue = _NotifyingQueue(self._work.set)

    def _on_dimse_message(self) -> None:
        if not self._serve_inline:
            self._work.set()

    def kill(self) -> None:
        self._work.set()
        super().kill()

    def _run_reactor(self) -> None:
        """pynetdicom 3.0.x ``Association._run_reactor`` with ``time.sleep(0.001)`` replaced by
        a wait for work, and the DIMSE messages left to the DUL thread."""
        self._is_paused = False
        # Established: from now on the DUL thread serves requests (including any already queued).
        self._serve_inline = SERVE_INLINE
        cast(EventDrivenDUL, self.dul)._wake()
        served = False
        while not self._kill:
            if not served:
                self._work.wait(POLL_SECONDS)
            # Clear before looking: a put after this point sets it again for the next wait.
            self._work.clear()

            self._is_paused = True
            self._reactor_checkpoint.wait()
            self._is_paused = False

            served = False
            if not self._serve_inline:
                context_id, msg = self.dimse.get_msg(block=False)
                if msg:
                    self._serve_request(msg, cast(int, context_id))
                    served = True  # more may be queued: look again without waiting

            if self.is_established and self.acse.is_release_requested():
                self.acse.send_release(is_response=True)
                LOGGER.info("Association Released")
                self.is_released = True
                self.is_established = False
                evt.trigger(self, evt.EVT_RELEASED, {})
                self.kill()
                return

            if self.acse.is_aborted():
                log_msg = "Association Aborted"
                if self.acse.is_aborted("a-p-abort"):
                    log_msg += " (A-P-ABORT)"
                LOGGER.info(log_msg)
                self.dul.receive_pdu(wait=False)
                self.is_aborted = True
                self.is_established = False
                evt.trigger(self, evt.EVT_ABORTED, {})
                self.kill()
                return

            if not self.dul.is_alive():
                self.kill()
                return

            if self.dul.idle_timer_expired():
                LOGGER.error("Network timeout reached")
                if self.network_timeout_response == "A-RELEASE":
                    self._is_paused = True
                    self._reactor_checkpoint.wait()
                    self.release()
                    self._is_paused = False
                else:
                    self.abort()

                self.kill()
                return


_LOGGING_HANDLERS = (
    (evt.EVT_DIMSE_RECV, standard_dimse_recv_handler),
    (evt.EVT_DIMSE_SENT, standard_dimse_sent_handler),
    (evt.EVT_PDU_RECV, standard_pdu_recv_handler),
    (evt.EVT_PDU_SENT, standard_pdu_sent_handler),
)


def drop_silent_logging_handlers(assoc: Association) -> None:
    """Unbind pynetdicom's per-PDU/per-message logging handlers when its logger would drop
    their output anyway: they format a multi-line summary of every PDU and DIMSE message
    (decoding command-set elements to do so) before handing it to a disabled logger, which
    was ~10% of the SCP's CPU per instance. With INFO enabled for "pynetdicom" they stay."""
    if logging.getLogger("pynetdicom").isEnabledFor(logging.INFO):
        return
    for event, handler in _LOGGING_HANDLERS:
        if any(bound is handler for bound, _ in assoc.get_handlers(event)):
            assoc.unbind(event, handler)


def adopt(assoc: Association) -> Association:
    """Turn a freshly created acceptor ``Association`` (threads not started) into the
    event-driven one. The classes only add methods, so switching ``__class__`` of the new
    objects is equivalent to having constructed the subclasses, without copying pynetdicom's
    40-line set-up in ``RequestHandler._create_association``."""
    assert not assoc.is_alive() and not assoc.dul.is_alive()
    assoc.dul.__class__ = EventDrivenDUL
    cast(EventDrivenDUL, assoc.dul)._install_wakeup()
    if assoc.dul.socket is not None and type(assoc.dul.socket) is AssociationSocket:
        assoc.dul.socket.__class__ = FastRecvSocket
    assoc.__class__ = EventDrivenAssociation
    cast(EventDrivenAssociation, assoc)._install_wakeup()
    drop_silent_logging_handlers(assoc)
    return assoc


class EventDrivenRequestHandler(RequestHandler):
    def handle(self) -> None:
        # TLS: finish the handshake here, in this connection's thread (see node/security/tls.py).
        if not cast(DeferredHandshakeServer, self.server).handshake(self.request, self.client_address):
            return
        super().handle()

    def _create_association(self) -> Association:
        return adopt(super()._create_association())


def make_server(ae: pynetdicom.AE, address: tuple[str, int], evt_handlers: list[Any],
                ssl_context: ssl.SSLContext | None = None,
                on_handshake_failure: HandshakeFailure | None = None) -> ThreadedAssociationServer:
    """``ae.start_server(address, block=False, evt_handlers=..., ssl_context=...)`` with
    event-driven associations (stock ones on an unsupported pynetdicom version)."""
    if not is_supported():
        LOGGER.warning("pynetdicom %s: event-driven reactor not verified for this version, using the stock one",
                       pynetdicom.__version__)
        return cast(ThreadedAssociationServer, ae.start_server(address, block=False, evt_handlers=evt_handlers,
                                                               ssl_context=ssl_context))
    server = ae.make_server(address, evt_handlers=evt_handlers, server_class=DeferredHandshakeServer,
                            request_handler=EventDrivenRequestHandler, ssl_context=ssl_context)
    server.handshake_timeout = ae.acse_timeout or 30.0
    server.on_handshake_failure = on_handshake_failure
    thread = threading.Thread(target=make_target(server.serve_forever),
                              name=f"AcceptorServer@{server.server_address[1]}", daemon=True)
    thread.start()
    ae._servers.append(server)  # as start_server does: AE.shutdown() and server.shutdown() expect it
    return server
