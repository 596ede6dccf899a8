"""What both retrievers (DICOMweb: dicomweb.py, DIMSE: dimse.py) share: the outcome exceptions,
the lease and progress cadence, storing one retrieved instance, and the part of the request
runner the DIMSE retriever uses. Here so that dimse.py needs nothing from dicomweb.py (which
hands a ``type: dimse`` source over to it): the two would otherwise import each other."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy.orm import Session, sessionmaker

from node.receive.header import parse_header
from node.store.ingest import InstanceStore, ingest_refusal

LEASE = timedelta(minutes=10)  # a claimed request is not claimed again before this (renewed as it goes)
PROGRESS_EVERY = 10  # instances between progress writes (counts, lease)


class Unreachable(Exception):
    """The source could not be reached or failed on its side: worth another attempt.
    ``progressed``: the attempt stored something first (the count of failed attempts restarts)."""

    def __init__(self, message: str, *, progressed: bool = False) -> None:
        super().__init__(message)
        self.progressed = progressed


class Permanent(Exception):
    """The request cannot succeed as it is (unknown study, HTTP 4xx, an instance refused)."""


class Runner(Protocol):
    """What a retriever uses of `node.retrieve.dicomweb.RequestRunner`."""

    sessions: sessionmaker[Session]
    store: InstanceStore
    owner: str
    resolve: Callable[[Path], Path]

    def _set(self, rid: int, *, state: str | None = None, **values: Any) -> None: ...


def ingest_part10(store: InstanceStore, owner: str, data: bytes, *, sop_class: str, sop: str, tsx: str,
                  source: str) -> None:
    """Store one retrieved instance (Part 10 bytes) through the durable C-STORE path; a refusal
    by the node's header checks is `Permanent`. Shared by the DICOMweb and DIMSE retrievers."""
    try:
        header = parse_header(data, affected_sop_class=sop_class, affected_sop_instance=sop, transfer_syntax=tsx)
        store.ingest(header, data, owner)
    except Exception as exc:
        refusal = ingest_refusal(exc)
        if refusal.permanent:
            raise Permanent(f"instance {sop} from source {source!r} refused: {refusal.reason}") from None
        raise  # storage full, disk or database: the caller retries the attempt
