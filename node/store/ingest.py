"""Receive-side storage: file first (fsynced), then the index row, then the answer.

If indexing fails after the file was written, the new file is removed again so nothing is
half-recorded; if the process dies between the two, startup reconciliation
(`reconcile`) indexes the complete file it finds (the peer never got a Success for it, will
re-send, and the duplicate is recognised).
"""

from __future__ import annotations

import hashlib
import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydicom import dcmread
from sqlalchemy import bindparam, delete, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from node import metrics
from node.db.models import Instance, Series, SeriesState, utcnow
from node.receive.header import (STATUS_INVALID_UID, STATUS_OUT_OF_RESOURCES, InstanceHeader, Refusal,
                                 parse_header)
from node.series.tracking import record_instance
from node.store.files import FileStore, StorageFull
from node.store.uids import InvalidUID

log = logging.getLogger(__name__)

_UID_LOCK_STRIPES = 64

_INSERT_INSTANCE = insert(Instance)
_BUMP_SERIES = (
    update(Series)
    .where(Series.series_uid == bindparam("uid"), Series.state.in_([SeriesState.RECEIVING, SeriesState.RESULT]))
    .values(n_instances=Series.n_instances + 1, last_received_at=bindparam("now"))
)


def index_instance(session: Session, header: InstanceHeader, relpath: str, size: int, *, late_policy: str,
                   calling_ae: str | None = None, produced: bool = False, node: str | None = None,
                   sha256: str | None = None) -> bool:
    """Index one stored file and do its series bookkeeping (ORM path, for the rare callers:
    crash reconciliation and the node's own results). False if it was already indexed."""
    if session.get(Instance, header.sop_instance_uid) is not None:
        return False
    now = utcnow()
    session.add(Instance(sop_instance_uid=header.sop_instance_uid, sop_class_uid=header.sop_class_uid,
                         study_uid=header.study_uid, series_uid=header.series_uid,
                         transfer_syntax_uid=header.transfer_syntax_uid, path=relpath, size_bytes=size,
                         calling_ae=calling_ae, received_at=now, attrs=header.attrs, node=node,
                         sha256=sha256))
    session.flush()
    record_instance(session, header, now, late_policy, produced=produced)
    return True


@dataclass(frozen=True)
class IngestResult:
    sop_instance_uid: str
    duplicate: bool
    # A duplicate whose content differs from the stored copy (which is kept).
    conflict: bool = False
    stored_size: int | None = None


@dataclass(frozen=True)
class IngestRefusal:
    """Why an instance was not stored, as the DICOM status its sender is answered (C-STORE status,
    STOW-RS FailureReason). One mapping for every way in: the SCP, STOW-RS and retrievals."""

    status: int
    reason: str
    # refused: the instance itself is at fault, sending it again changes nothing. storage_full,
    # error (a disk or database failure, worth its traceback in the log): 0xA700, the node could
    # not store it now and the sender keeps it and retries later.
    cause: Literal["refused", "storage_full", "error"]

    @property
    def permanent(self) -> bool:
        return self.cause == "refused"


def ingest_refusal(exc: Exception) -> IngestRefusal:
    """The refusal an exception from `parse_header` or `InstanceStore.ingest` means."""
    if isinstance(exc, Refusal):
        return IngestRefusal(exc.status, exc.reason, "refused")
    if isinstance(exc, InvalidUID):
        return IngestRefusal(STATUS_INVALID_UID, str(exc), "refused")
    if isinstance(exc, StorageFull):
        return IngestRefusal(STATUS_OUT_OF_RESOURCES, f"storage full: {exc}", "storage_full")
    return IngestRefusal(STATUS_OUT_OF_RESOURCES, f"could not be stored: {type(exc).__name__}: {exc}", "error")


class InstanceStore:
    def __init__(self, files: FileStore, sessions: sessionmaker[Session], *, late_policy: str = "reprocess") -> None:
        self.files = files
        self.sessions = sessions
        self.engine = sessions.kw["bind"]
        self.late_policy = late_policy
        # SQLite has one writer: index writes are serialised here, which avoids busy retries.
        self._lock = threading.Lock()
        # The file write (two fsyncs, most of an instance's time) runs outside `_lock` so that
        # parallel associations overlap their fsyncs (the filesystem commits them together).
        # Writers of the same SOP Instance UID stay serialised, by a striped lock, which keeps
        # the duplicate check (file exists?) + write + insert atomic per instance.
        self._uid_locks = [threading.Lock() for _ in range(_UID_LOCK_STRIPES)]

    def _uid_lock(self, sop_uid: str) -> threading.Lock:
        return self._uid_locks[hash(sop_uid) % _UID_LOCK_STRIPES]

    def ingest(self, header: InstanceHeader, encoded: bytes, calling_ae: str | None) -> IngestResult:
        relpath = self.files.relpath_for(header.study_uid, header.series_uid, header.sop_instance_uid)
        with self._uid_lock(header.sop_instance_uid):
            stored = self.files.write(relpath, encoded)
            if not stored.created:
                return IngestResult(header.sop_instance_uid, duplicate=True, conflict=not stored.same_content,
                                    stored_size=stored.size)
            now = utcnow()
            row = {
                "sop_instance_uid": header.sop_instance_uid, "sop_class_uid": header.sop_class_uid,
                "study_uid": header.study_uid, "series_uid": header.series_uid,
                "transfer_syntax_uid": header.transfer_syntax_uid, "path": relpath, "size_bytes": stored.size,
                "calling_ae": calling_ae, "received_at": now, "attrs": header.attrs,
                "node": self.files.node_name, "sha256": hashlib.sha256(encoded).hexdigest(),
            }
            try:
                with self._lock:
                    # Core statements, not the ORM: this runs once per received instance and the
                    # ORM's unit of work was most of the per-instance cost.
                    with self.engine.begin() as conn:
                        conn.execute(_INSERT_INSTANCE, row)
                        res = conn.execute(_BUMP_SERIES, {"uid": header.series_uid, "now": now})
                    if res.rowcount != 1:
                        # New series, or one that a late instance re-opens: the ORM path, rarely taken.
                        # (The instance row is already committed; if this fails, `_undo` below
                        # removes it and the file, and the peer gets 0xA700 and re-sends.)
                        with self.sessions.begin() as session:
                            record_instance(session, header, now, self.late_policy)
            except IntegrityError:
                # Already indexed (e.g. by another node sharing the DB, or the file was pruned).
                with self.sessions() as session:
                    existing = session.get(Instance, header.sop_instance_uid)
                if existing is not None and existing.path != relpath:
                    self.files.remove(relpath)
                return IngestResult(header.sop_instance_uid, duplicate=True)
            except BaseException:
                self._undo(header.sop_instance_uid, relpath)
                raise
        return IngestResult(header.sop_instance_uid, duplicate=False)

    def _undo(self, sop_uid: str, relpath: str) -> None:
        """Indexing failed: remove what this call wrote so nothing is half-recorded."""
        self.files.remove(relpath)
        try:
            with self.engine.begin() as conn:
                conn.execute(delete(Instance).where(Instance.sop_instance_uid == sop_uid))
        except Exception:  # the database itself is down; reconcile() repairs at startup
            log.exception("could not roll back index row")

    def reconcile(self) -> int:
        """Index complete files that have no index row (a crash between write and commit)."""
        removed = self.files.clean_incoming()
        if removed:
            log.info("removed unacknowledged partial files", extra={"count": removed})
        with self.sessions() as session:
            known = set(session.scalars(select(Instance.path)))
        added = 0
        for relpath, path in self.files.iter_files():
            if relpath in known:
                continue
            try:
                header = _header_from_file(path)
            except Refusal as exc:
                self._quarantine(relpath, exc.reason)
                continue
            except Exception as exc:  # empty, not DICOM, unreadable: pydicom raises all sorts
                self._quarantine(relpath, f"{type(exc).__name__}: {exc}")
                continue
            with self._lock, self.sessions.begin() as session:
                added += index_instance(session, header, relpath, path.stat().st_size, late_policy=self.late_policy,
                                        node=self.files.node_name, sha256=_sha256_of(path))
        if added:
            log.info("re-indexed files found without an index row", extra={"count": added})
        return added

    def _quarantine(self, relpath: str, reason: str) -> None:
        """One bad file must not keep the node from starting (D1): set it aside, say why."""
        try:
            moved = self.files.move_to_quarantine(relpath)
        except OSError as exc:
            log.error("unreadable file in store could not be quarantined; left in place",
                      extra={"path": relpath, "reason": reason, "error": str(exc)})
            return
        metrics.QUARANTINED_FILES.inc()
        log.warning("unreadable file in store moved to quarantine",
                    extra={"path": relpath, "quarantined_as": str(moved.relative_to(self.files.root)),
                           "reason": reason[:300]})


def _header_from_file(path: Path) -> InstanceHeader:
    data = path.read_bytes()
    meta = dcmread(path, stop_before_pixels=True, specific_tags=["SOPInstanceUID"]).file_meta
    return parse_header(
        data,
        affected_sop_class=str(meta.MediaStorageSOPClassUID),
        affected_sop_instance=str(meta.MediaStorageSOPInstanceUID),
        transfer_syntax=str(meta.TransferSyntaxUID),
    )


def _sha256_of(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()
