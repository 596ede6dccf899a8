"""Fetch the files a job needs from the cluster node that holds them (WADO-RS), before reading them.

Each instance row names the node whose storage.root holds its file (``Instance.node``). Before a
job reads a series, every file that is missing locally and held by another node is retrieved
from that node (node/api/wado.py) as the stored Part 10 bytes: a series' files in one request
(``/dicom-web/studies/{study}/series/{series}``, parts matched by SOP Instance UID), a lone file
or one the series answer lacked by ``.../instances/{sop}``. Each is checked against the index
(size, SHA-256 of the bytes the owner stored, SOP Instance UID) and written durably to the same
relative path under this node's storage.root (temp file, fsync, rename: `FileStore.write`). The
copy is a cache: the index row keeps naming its owner, and retention may delete it
(node/store/retention.py).

Failures: the owner cannot be reached (connection refused, timeout, HTTP 5xx/429) ->
`PeerUnavailable`, an ordinary exception, so the job is retried with back-off; the owner never
announced itself, no longer has the instance (404), refuses our credentials (401/403) or sends
other bytes than indexed -> `PermanentError` with the reason.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from io import BytesIO
from pathlib import Path

import requests
from dicomweb_client.api import DICOMwebClient
from pydicom import dcmread
from sqlalchemy.orm import Session, sessionmaker

from node import metrics
from node.cluster.nodes import node_url
from node.config import ClusterConfig
from node.db.models import Instance, utcnow
from node.deliver.destinations import StowDestination
from node.deliver.stow import make_client
from node.job.errors import PermanentError
from node.store.files import FileStore

log = logging.getLogger(__name__)

WRITE_THREADS = 4  # parallel durable writes of a fetched series (their fsyncs overlap)


class PeerUnavailable(Exception):
    """The node holding a file could not be reached or failed on its side: the job is retried."""


@dataclass(frozen=True)
class IndexedFile:
    """What the index says about one instance file (enough to fetch and check it)."""

    sop_instance_uid: str
    study_uid: str
    series_uid: str
    path: str  # relative to the store root
    size_bytes: int
    node: str | None  # the node that holds it; None: this node or shared storage
    sha256: str | None = None  # of the owner's stored bytes; None: indexed before it was recorded

    @classmethod
    def of(cls, row: Instance) -> IndexedFile:
        return cls(row.sop_instance_uid, row.study_uid, row.series_uid, row.path, row.size_bytes, row.node,
                   row.sha256)


class PeerFetcher:
    """Makes the files of index rows present under this node's store root (see the module doc)."""

    def __init__(self, sessions: sessionmaker[Session], files: FileStore, cfg: ClusterConfig,
                 resolve: Callable[[Path], Path] = lambda p: p) -> None:
        self.sessions = sessions
        self.files = files
        self.cfg = cfg
        self.resolve = resolve
        self._clients: dict[str, DICOMwebClient] = {}

    def _client(self, url: str) -> DICOMwebClient:
        if url not in self._clients:
            self._clients[url] = make_client(StowDestination(
                url=url, name="cluster-peer", timeout_s=self.cfg.timeout_seconds, verify_tls=self.cfg.verify_tls,
                auth_header=self.cfg.auth_header.get_secret_value() if self.cfg.auth_header else None,
                ca_file=str(self.resolve(self.cfg.ca_file)) if self.cfg.ca_file else None))
        return self._clients[url]

    def ensure_local(self, rows: Sequence[IndexedFile]) -> int:
        """Fetch every file of ``rows`` that is missing here and held by another node; returns how
        many were fetched. Files this node should hold itself are left to the caller's reader."""
        todo = [r for r in rows if r.node is not None and r.node != self.cfg.node_name
                and not (self.files.root / r.path).exists()]
        if not todo:
            return 0
        t0 = time.perf_counter()
        urls: dict[str, tuple[str, datetime]] = {}
        for name in sorted({r.node for r in todo if r.node is not None}):
            found = node_url(self.sessions, name)
            if found is None:
                raise PermanentError(f"{sum(r.node == name for r in todo)} instance(s) are held by node {name!r}, "
                                     "which has never announced itself in the nodes table (is it running with "
                                     "cluster.enabled?)")
            urls[name] = found
        groups: dict[tuple[str, str, str], list[IndexedFile]] = {}
        for r in todo:
            assert r.node is not None
            groups.setdefault((r.node, r.study_uid, r.series_uid), []).append(r)
        total = 0
        for (owner, _, _), rows in groups.items():
            url, beat = urls[owner]
            try:
                total += self._fetch_series(rows, owner, url) if len(rows) > 1 else self._fetch_one(rows[0], owner, url)
            except PeerUnavailable as exc:
                # The heartbeat tells the operator whether the node is down or just unreachable from here.
                age = (utcnow() - beat).total_seconds()
                raise PeerUnavailable(f"{exc} (its last heartbeat was {age:.0f} s ago)") from None
        log.info("fetched instance files from cluster peers", extra={
            "count": len(todo), "bytes": total, "nodes": sorted(urls), "seconds": round(time.perf_counter() - t0, 3)})
        return len(todo)

    def _get(self, base: str, url: str, what: str) -> list[bytes]:
        try:
            # Accept multipart/related; type="*/*": the parts come back as the stored bytes,
            # not re-encoded (the node serves its Part 10 files as they are).
            return list(self._client(base).retrieve_bulkdata(url))
        except requests.HTTPError as exc:
            code = exc.response.status_code if exc.response is not None else 0
            if code >= 500 or code == 429:
                raise PeerUnavailable(f"fetching {what}: HTTP {code}") from None
            hint = {401: " (check cluster.auth_header)", 403: " (the key needs the read role)",
                    404: " (the owner no longer holds it)"}.get(code, "")
            raise PermanentError(f"fetching {what}: HTTP {code}{hint}") from None
        except requests.RequestException as exc:
            raise PeerUnavailable(f"fetching {what}: node unreachable: {type(exc).__name__}") from None

    def _fetch_series(self, rows: list[IndexedFile], owner: str, base: str) -> int:
        """One request for the series (a round trip per instance was most of the time); the parts
        are matched to the rows by SOP Instance UID, and any row the answer lacks is asked for alone."""
        r0 = rows[0]
        what = f"series {r0.series_uid} from node {owner!r} ({base})"
        for r in rows:
            self._check_path(r, what)
        wanted = {r.sop_instance_uid: r for r in rows}
        matched: list[tuple[IndexedFile, bytes]] = []
        for data in self._get(base, f"{base}/studies/{r0.study_uid}/series/{r0.series_uid}", what):
            r = wanted.pop(self._sop_of(data, what), None)
            if r is not None:  # parts this node already has, or did not ask for, are dropped
                matched.append((r, data))
        # Each durable write waits on fsyncs; a few threads overlap them.
        with ThreadPoolExecutor(WRITE_THREADS, thread_name_prefix="peer-fetch") as pool:
            total = sum(pool.map(lambda rd: self._check_and_write(rd[0], rd[1], f"instance {rd[0].sop_instance_uid} "
                                                                                f"of {what}"), matched))
        for r in wanted.values():
            total += self._fetch_one(r, owner, base)
        return total

    def _fetch_one(self, r: IndexedFile, owner: str, base: str) -> int:
        url = f"{base}/studies/{r.study_uid}/series/{r.series_uid}/instances/{r.sop_instance_uid}"
        what = f"instance {r.sop_instance_uid} from node {owner!r} ({base})"
        self._check_path(r, what)
        parts = self._get(base, url, what)
        if len(parts) != 1:
            raise PermanentError(f"fetching {what}: {len(parts)} parts in the answer, expected 1")
        sop = self._sop_of(parts[0], what)
        if sop != r.sop_instance_uid:
            raise PermanentError(f"fetching {what}: the answer holds instance {sop}")
        return self._check_and_write(r, parts[0], what)

    def _check_path(self, r: IndexedFile, what: str) -> None:
        # The index row's path is written where the store's layout puts it, nowhere else.
        if r.path != self.files.relpath_for(r.study_uid, r.series_uid, r.sop_instance_uid):
            raise PermanentError(f"fetching {what}: indexed path {r.path!r} is not the store's layout")

    @staticmethod
    def _sop_of(data: bytes, what: str) -> str:
        try:
            return str(dcmread(BytesIO(data), stop_before_pixels=True).file_meta.MediaStorageSOPInstanceUID)
        except Exception as exc:
            raise PermanentError(f"fetching {what}: not a DICOM Part 10 file: {type(exc).__name__}") from None

    def _check_and_write(self, r: IndexedFile, data: bytes, what: str) -> int:
        if len(data) != r.size_bytes:
            raise PermanentError(f"fetching {what}: {len(data)} bytes, the index says {r.size_bytes}")
        if r.sha256 is not None and hashlib.sha256(data).hexdigest() != r.sha256:
            raise PermanentError(f"fetching {what}: the bytes differ from those the owner stored "
                                 f"(SHA-256 mismatch; the owner's file or the transfer is corrupt)")
        self.files.write(r.path, data)  # temp + fsync + rename; a concurrent copy already there is kept
        metrics.PEER_FETCHED_BYTES.inc(len(data))
        return len(data)
