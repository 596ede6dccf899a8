"""Open an association as SCU and, when that fails, say what happened.

pynetdicom reports a refused TCP connection, an A-ASSOCIATE-RJ and a peer that hung up the
same way to the caller (an association that is not established, with the reason only in its own
log). Operators need to tell "nothing listens on that port" from "the PACS does not know our AE
title", so the failure is described here, once, for the delivery outbox and the CLI.
"""

from __future__ import annotations

import socket
import threading
from typing import Any

from pynetdicom import AE, evt
from pynetdicom.association import Association

# Longest wait of the probe that names a failed TCP connection (see _connect_error).
_PROBE_TIMEOUT_S = 5.0


def open_association(ae: AE, host: str, port: int, ae_title: str, **kwargs: Any) -> tuple[Association | None, str | None]:
    """``(association, None)`` when established, else ``(association or None, why)``."""
    connected = threading.Event()
    handlers = [(evt.EVT_CONN_OPEN, lambda _event: connected.set())]
    try:
        assoc = ae.associate(host, port, ae_title=ae_title, evt_handlers=handlers, **kwargs)
    except (OSError, RuntimeError, ValueError) as exc:  # e.g. a malformed address
        return None, f"cannot connect to {host}:{port}: {exc}"
    if assoc.is_established:
        return assoc, None
    return assoc, describe_failure(assoc, host, port, connected=connected.is_set())


def describe_failure(assoc: Association, host: str, port: int, *, connected: bool) -> str:
    if not connected:
        return f"cannot connect to {host}:{port}: {_connect_error(host, port)}"
    if assoc.is_rejected:
        rsp = assoc.acceptor.primitive
        if rsp is not None and getattr(rsp, "result", None) in (0x01, 0x02):
            return (f"association rejected by {host}:{port}: {rsp.reason_str} "
                    f"({rsp.result_str.lower()}, {rsp.source_str.lower()})")
        return f"association rejected by {host}:{port}"
    if assoc.is_aborted:
        return f"association aborted by {host}:{port} during negotiation (A-ABORT or connection closed)"
    return f"association with {host}:{port} not established (no answer within the ACSE timeout)"


def _connect_error(host: str, port: int) -> str:
    """Why a TCP connection fails, from one more attempt (pynetdicom only logs its OSError)."""
    try:
        with socket.create_connection((host, port), timeout=_PROBE_TIMEOUT_S):
            return "the TCP connection failed (it succeeds now: a transient failure)"
    except ConnectionRefusedError:
        return "connection refused (nothing listens on that port)"
    except socket.gaierror as exc:
        return f"host name not resolved ({exc.strerror})"
    except TimeoutError:
        return "connection timed out (host down or a firewall drops the packets)"
    except OSError as exc:
        return exc.strerror or str(exc)


__all__ = ["open_association", "describe_failure"]
