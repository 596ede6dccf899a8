"""Inference requests: retrieve a study from a DICOMweb source (QIDO-RS, WADO-RS), then follow its jobs.
(A ``type: dimse`` source is queried and retrieved by node/retrieve/dimse.py instead: C-FIND + C-GET.)

`RequestRunner.run_due` is the node's sweep for requests (APScheduler, ``retrieve.sweep_interval_seconds``):

* queued / querying / retrieving: claim the request (a conditional update that pushes its next
  attempt past a lease, so two nodes on one database never retrieve the same request), list the
  study's series and instances by QIDO-RS, fetch each instance that is not yet in the index by
  WADO-RS and store it through `InstanceStore.ingest` — the durable path C-STORE uses, so series
  completion, LGE selection and jobs follow exactly as for a C-STORE. Instances already indexed
  (SOP Instance UID) are skipped, so an attempt cut short by a crash or a network fault simply
  continues where it stopped. A source that cannot be reached (connection error, timeout, HTTP 5xx)
  is retried with a doubling delay, ``max_attempts`` times in all, then the request fails with the
  last error as its reason. A study the source does not hold, or an HTTP 4xx, fails at once.
* stored / processing: once every retrieved series is complete, the request follows the newest job
  of each selected series: done with their SEG/SR/PDF UIDs, or failed with the job's reason (or
  because no series of the study was selected).
"""

from __future__ import annotations

import io
import logging
import threading
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ALL_COMPLETED, FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pydicom
import requests
from dicomweb_client.api import DICOMwebClient
from pydicom.uid import ExplicitVRLittleEndian
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from node.config import DicomwebSourceConfig, DimseSourceConfig, SourceConfig
from node.db.models import InferenceRequest, Instance, Job, JobState, RequestState, Series, SeriesState, utcnow
from node.deliver.destinations import StowDestination
from node.deliver.stow import make_client
from node.retrieve.common import LEASE, PROGRESS_EVERY, Permanent, Unreachable, ingest_part10
from node.store.ingest import InstanceStore

log = logging.getLogger(__name__)

STORE_THREADS = 4  # parallel stores of a streamed series (their fsyncs overlap)

STUDY_UID, SERIES_UID, SOP_UID = "0020000D", "0020000E", "00080018"


def source_client(src: DicomwebSourceConfig, resolve: Callable[[Path], Path] = lambda p: p) -> DICOMwebClient:
    """A dicomweb-client for ``src``, with the connection settings a STOW destination uses
    (TLS verification, CA bundle, Authorization header, one HTTP attempt per call)."""
    return make_client(StowDestination(
        url=src.url, name=src.name, timeout_s=src.timeout_seconds, verify_tls=src.verify_tls,
        auth_header=src.auth_header.get_secret_value() if src.auth_header else None,
        ca_file=str(resolve(src.ca_file)) if src.ca_file else None))


def _value(item: dict[str, Any], tag: str) -> str | None:
    v = item.get(tag, {}).get("Value")
    return str(v[0]) if v else None


def _http_error(exc: requests.RequestException, what: str) -> Exception:
    if isinstance(exc, requests.HTTPError) and exc.response is not None:
        code = exc.response.status_code
        text = f"{what}: HTTP {code} {exc.response.reason or ''}".strip()
        return Unreachable(text) if code >= 500 or code == 429 else Permanent(text)
    return Unreachable(f"{what}: {type(exc).__name__}: {exc}")


def encode_part10(ds: pydicom.Dataset) -> tuple[bytes, str, str]:
    """A retrieved dataset as Part 10 bytes (file meta + dataset, in its transfer syntax), with its
    SOP Class UID and transfer syntax, as `parse_header` wants them."""
    meta = getattr(ds, "file_meta", None)
    if meta is None or "TransferSyntaxUID" not in meta:
        # WADO-RS parts normally carry their file meta; if one does not, pydicom decoded it as
        # explicit VR little endian (the PS3.18 default).
        ds.file_meta = meta = pydicom.dataset.FileMetaDataset()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    buf = io.BytesIO()
    pydicom.dcmwrite(buf, ds, enforce_file_format=True)
    return buf.getvalue(), str(ds.SOPClassUID), str(meta.TransferSyntaxUID)


class RequestRunner:
    """Runs inference requests: retrieval from their source, then the progress of their jobs."""

    def __init__(self, sessions: sessionmaker[Session], store: InstanceStore, sources: Sequence[SourceConfig],
                 *, resolve: Callable[[Path], Path] = lambda p: p, owner: str = "node") -> None:
        self.sessions = sessions
        self.store = store
        self.sources = {s.name: s for s in sources}
        self.resolve = resolve
        self.owner = owner[:16]  # recorded as the "calling AE" of retrieved instances

    # -- the sweep -------------------------------------------------------------
    def run_due(self, now: datetime | None = None) -> int:
        """Retrieve every due request, then update the ones waiting for their jobs. Returns how
        many requests were retrieved (successfully or not)."""
        now = now or utcnow()
        with self.sessions() as s:
            due = list(s.scalars(select(InferenceRequest.id).where(
                InferenceRequest.state.in_(RequestState.RETRIEVAL), InferenceRequest.next_attempt_at <= now)
                .order_by(InferenceRequest.priority.desc(), InferenceRequest.id)))
        n = 0
        for rid in due:
            if self._claim(rid, now):
                self.retrieve(rid)
                n += 1
        self.track()
        return n

    def recover(self) -> int:
        """At the start of a single node nothing else is retrieving: claimed requests are due now."""
        with self.sessions.begin() as s:
            res = s.execute(update(InferenceRequest).where(InferenceRequest.state.in_(RequestState.RETRIEVAL))
                            .values(next_attempt_at=utcnow()))
            return int(res.rowcount or 0)

    def _claim(self, rid: int, now: datetime) -> bool:
        with self.sessions.begin() as s:
            res = s.execute(update(InferenceRequest).where(
                InferenceRequest.id == rid, InferenceRequest.state.in_(RequestState.RETRIEVAL),
                InferenceRequest.next_attempt_at <= now).values(next_attempt_at=now + LEASE))
            return res.rowcount == 1

    def _set(self, rid: int, *, state: str | None = None, **values: Any) -> None:
        with self.sessions.begin() as s:
            r = s.get(InferenceRequest, rid)
            assert r is not None
            if state is not None and r.state != state:
                r.state = state
                r.stages = {**(r.stages or {}), state: utcnow().isoformat(timespec="seconds")}
            for k, v in values.items():
                setattr(r, k, v)
            r.updated_at = utcnow()

    # -- retrieval -------------------------------------------------------------
    def retrieve(self, rid: int) -> None:
        """One attempt at retrieving request ``rid`` (claimed by the caller)."""
        with self.sessions() as s:
            r = s.get(InferenceRequest, rid)
            assert r is not None
            study, wanted, source_name, attempts = r.study_uid, r.series_uids, r.source, r.attempts
        src = self.sources.get(source_name)
        if src is None:
            self._fail(rid, f"source {source_name!r} is not configured (sources: {sorted(self.sources)})")
            return
        try:
            self._set(rid, state=RequestState.QUERYING)
            if isinstance(src, DimseSourceConfig):  # C-FIND + C-GET (node/retrieve/dimse.py)
                from node.retrieve.dimse import DimseRetrieval

                dimse = DimseRetrieval(self, src)
                plan = dimse.query(study, wanted)
                self._set(rid, state=RequestState.RETRIEVING, found_series=sorted({se for se, _ in plan}),
                          instances_expected=len(plan))
                dimse.fetch(rid, study, plan)
            else:
                client = source_client(src, self.resolve)
                plan = self._query(client, study, wanted, src.name)
                self._set(rid, state=RequestState.RETRIEVING, found_series=sorted({se for se, _ in plan}),
                          instances_expected=len(plan))
                self._fetch(client, rid, study, plan, src.name)
        except Permanent as exc:
            self._fail(rid, str(exc))
            return
        except Unreachable as exc:
            self._retry_or_fail(rid, src, (0 if exc.progressed else attempts) + 1, str(exc))
            return
        except Exception as exc:  # a bug or a database failure: retried like an outage, reason kept
            log.exception("inference request retrieval failed", extra={"request_id": rid})
            self._retry_or_fail(rid, src, attempts + 1, f"{type(exc).__name__}: {exc}")
            return
        self._set(rid, state=RequestState.STORED, attempts=0, reason=None)
        log.info("inference request retrieved", extra={"request_id": rid, "source": src.name,
                                                        "instances": len(plan)})

    def _query(self, client: DICOMwebClient, study: str, wanted: list[str] | None,
               source: str) -> list[tuple[str, str]]:
        """(series UID, SOP Instance UID) of every instance to retrieve, by QIDO-RS."""
        try:
            series = [u for u in (_value(x, SERIES_UID) for x in client.search_for_series(study_instance_uid=study)) if u]
        except requests.RequestException as exc:
            raise _http_error(exc, f"QIDO-RS series of the study on source {source!r}") from None
        if not series:
            raise Permanent(f"study {study} not found on source {source!r} (QIDO-RS lists no series)")
        if wanted:
            missing = sorted(set(wanted) - set(series))
            if missing:
                raise Permanent(f"series {', '.join(missing)} of study {study} not found on source {source!r}")
            series = [u for u in series if u in set(wanted)]
        plan: list[tuple[str, str]] = []
        for se in series:
            try:
                found = client.search_for_instances(study_instance_uid=study, series_instance_uid=se)
            except requests.RequestException as exc:
                raise _http_error(exc, f"QIDO-RS instances of series {se} on source {source!r}") from None
            plan += [(se, u) for u in (_value(x, SOP_UID) for x in found) if u]
        return plan

    def _fetch(self, client: DICOMwebClient, rid: int, study: str, plan: Iterable[tuple[str, str]],
               source: str) -> None:
        """WADO-RS the instances of ``plan`` not yet indexed and store them: a series with several
        missing instances in one streamed request (a round trip per instance was most of the time;
        the parts are stored as they arrive, so an interrupted stream keeps what came), a lone
        instance, or one the series answer lacked or that was refused from the stream, by itself.
        (A stream cut short can end without an error, its last part truncated: `parse_header`
        refuses too few pixels, and the instance is asked for again.)"""
        plan = list(plan)
        with self.sessions() as s:
            indexed = set(s.scalars(select(Instance.sop_instance_uid).where(Instance.study_uid == study)))
        todo = [(se, sop) for se, sop in plan if sop not in indexed]
        already = len(plan) - len(todo)
        progress = {"done": already, "new": 0}
        lock = threading.Lock()
        self._set(rid, instances_retrieved=already, instances_already_stored=already)

        def store(ds: pydicom.Dataset, sop: str) -> None:
            data, sop_class, tsx = encode_part10(ds)
            ingest_part10(self.store, self.owner, data, sop_class=sop_class, sop=sop, tsx=tsx, source=source)
            with lock:
                progress["done"] += 1
                progress["new"] += 1
                report = progress["new"] % PROGRESS_EVERY == 0
                done = progress["done"]
            if report:
                self._set(rid, instances_retrieved=done, next_attempt_at=utcnow() + LEASE)

        def failed(exc: requests.RequestException, what: str) -> Exception:
            self._set(rid, instances_retrieved=progress["done"])
            err = _http_error(exc, f"WADO-RS {what} from source {source!r}")
            if isinstance(err, Unreachable) and progress["new"]:
                return Unreachable(str(err), progressed=True)  # the next attempt continues
            return err

        by_series: dict[str, list[str]] = {}
        for se, sop in todo:
            by_series.setdefault(se, []).append(sop)
        for se, sops in by_series.items():
            missing = set(sops)
            if len(sops) > 1:
                # Parts are stored by a few threads while the stream goes on: each store waits
                # on two fsyncs, which overlap across threads (the store's locks allow it).
                pending: dict[Future[None], str] = {}
                with ThreadPoolExecutor(STORE_THREADS, thread_name_prefix="retrieve-store") as pool:
                    stream = iter(client.iter_series(study, se))
                    while True:
                        try:
                            ds = next(stream)
                        except StopIteration:
                            break
                        except Exception as exc:
                            # A broken stream (connection lost, a part that does not decode):
                            # what came is kept, the rest is asked for one by one below, where an
                            # unreachable source is told apart from a bad instance.
                            log.warning("series stream broke off; retrieving the rest instance by instance",
                                        extra={"request_id": rid, "error": f"{type(exc).__name__}: {exc}"[:300]})
                            break
                        sop = str(ds.SOPInstanceUID)
                        if sop not in missing or sop in pending.values():
                            continue  # stored meanwhile, not planned, or sent twice
                        pending[pool.submit(store, ds, sop)] = sop
                        if len(pending) >= 2 * STORE_THREADS:  # bounded memory
                            self._settle(pending, missing, rid, block_one=True)
                    self._settle(pending, missing, rid)
            for sop in sorted(missing):
                try:
                    ds = client.retrieve_instance(study, se, sop)
                except requests.RequestException as exc:
                    raise failed(exc, f"instance {sop}") from None
                store(ds, sop)
        self._set(rid, instances_retrieved=progress["done"])

    @staticmethod
    def _settle(pending: dict[Future[None], str], missing: set[str], rid: int, *, block_one: bool = False) -> None:
        """Collect finished stores (with ``block_one``, wait for at least one; else for all): a
        stored instance leaves ``missing``; a refused one stays there, to be asked for alone
        (dicomweb-client yields the last part of a stream cut short as it is, so a refusal from
        the stream may be the transfer's fault); any other error is raised once all are done."""
        done, _ = wait(list(pending), return_when=FIRST_COMPLETED if block_one else ALL_COMPLETED)
        error: BaseException | None = None
        for fut in done:
            sop = pending.pop(fut)
            exc = fut.exception()
            if exc is None:
                missing.discard(sop)
            elif isinstance(exc, Permanent):
                log.warning("streamed instance refused; retrieving it alone",
                            extra={"request_id": rid, "reason": str(exc)[:300]})
            elif error is None:
                error = exc
        if error is not None:
            if pending:
                wait(list(pending))
            raise error

    def _retry_or_fail(self, rid: int, src: SourceConfig, attempts: int, error: str) -> None:
        if attempts >= src.max_attempts:
            self._fail(rid, f"source {src.name!r} failed {attempts} time(s) in a row; last error: {error}",
                       attempts=attempts)
            return
        delay = min(src.retry_backoff_seconds * 2 ** (attempts - 1), src.max_backoff_seconds)
        log.warning("inference request retrieval will be retried",
                    extra={"request_id": rid, "source": src.name, "attempt": attempts, "delay_s": delay,
                           "error": error[:300]})
        self._set(rid, attempts=attempts, next_attempt_at=utcnow() + timedelta(seconds=delay),
                  reason=f"attempt {attempts} of {src.max_attempts} failed, retrying in {delay:g} s: {error}"[:2000])

    def _fail(self, rid: int, reason: str, **values: Any) -> None:
        log.warning("inference request failed", extra={"request_id": rid, "reason": reason[:300]})
        self._set(rid, state=RequestState.FAILED, reason=reason[:2000], **values)

    # -- after storage: follow the jobs ---------------------------------------------
    def track(self) -> None:
        with self.sessions() as s:
            waiting = list(s.scalars(select(InferenceRequest.id).where(
                InferenceRequest.state.in_((RequestState.STORED, RequestState.PROCESSING)))))
        for rid in waiting:
            self._track_one(rid)

    def _track_one(self, rid: int) -> None:
        with self.sessions() as s:
            r = s.get(InferenceRequest, rid)
            assert r is not None
            uids = list(r.found_series or [])
            series = {x.series_uid: x for x in s.scalars(select(Series).where(Series.series_uid.in_(uids)))}
            if len(series) < len(uids) or any(x.state == SeriesState.RECEIVING for x in series.values()):
                return  # still arriving / not yet complete: the series sweep decides
            newest: dict[str, Job] = {}
            for j in s.scalars(select(Job).where(Job.series_uid.in_(uids)).order_by(Job.revision)):
                newest[j.series_uid] = j
        selected = [u for u in uids if series[u].state == SeriesState.SELECTED]
        if not selected:
            why = "; ".join(f"{series[u].series_description or u}: {series[u].state}"
                            + (f" ({series[u].reason})" if series[u].reason else "") for u in uids)
            self._fail(rid, f"no series of the study was selected for processing: {why}")
            return
        jobs = [newest[u] for u in selected if u in newest]
        job_ids = [j.id for j in jobs]
        if len(jobs) < len(selected) or any(j.state in (JobState.QUEUED, JobState.RUNNING) for j in jobs):
            self._set(rid, state=RequestState.PROCESSING, job_ids=job_ids)
            return
        failed = [j for j in jobs if j.state != JobState.DONE]
        if failed:
            self._fail(rid, "; ".join(f"job {j.id} {j.state}: {j.reason}" for j in failed), job_ids=job_ids)
            return
        results = [{**o, "job_id": j.id} for j in jobs for o in (j.result or {}).get("objects", [])]
        self._set(rid, state=RequestState.DONE, job_ids=job_ids, results=results, reason=None)
        log.info("inference request done", extra={"request_id": rid, "jobs": job_ids})


def requested_destinations(sessions: sessionmaker[Session], study_uid: str, series_uid: str) -> list[str] | None:
    """Where a job's results go when its series was retrieved for inference requests: the union
    of the destinations they named, or None (every configured destination) when there is no such
    request or one of them named none."""
    with sessions() as s:
        reqs = list(s.scalars(select(InferenceRequest).where(
            InferenceRequest.study_uid == study_uid, InferenceRequest.state != RequestState.FAILED)))
    named: set[str] = set()
    for r in reqs:
        if series_uid not in (r.found_series or []):
            continue
        if not r.destinations:
            return None
        named |= set(r.destinations)
    return sorted(named) if named else None
