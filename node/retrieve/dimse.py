"""Inference requests from a PACS without DICOMweb: C-FIND to list the study, C-GET to retrieve it.

`DimseRetrieval` is what `RequestRunner.retrieve` uses for a ``type: dimse`` source:

* `query`: Study Root C-FIND at SERIES level (the study's series), then IMAGE level per series
  (their SOP Instance UIDs) — the same plan of (series, instance) the DICOMweb retriever makes.
* `fetch`: Study Root C-GET on one association that also accepts the C-STORE sub-operations (SCP
  role selection for the storage SOP classes); each received dataset's encoded bytes go through
  `ingest_part10`, the durable path C-STORE uses. A series none of whose instances is indexed yet
  is retrieved in one SERIES-level C-GET; otherwise only the missing instances are asked for
  (IMAGE level), so an interrupted retrieval resumes without storing anything twice.

Errors map onto the runner's retry rules: no connection, a rejected or aborted association, a
DIMSE timeout or "out of resources" are `Unreachable` (retried with backoff); a study the PACS
does not list, a refused C-FIND/C-GET or an instance the node refuses are `Permanent`.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from pydicom.dataset import Dataset
from pynetdicom import AE, build_role, evt
from pynetdicom.association import Association
from pynetdicom.sop_class import (  # type: ignore[attr-defined]
    EnhancedMRImageStorage,
    MRImageStorage,
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelGet,
)
from sqlalchemy import select

from node.config import DimseSourceConfig
from node.db.models import Instance, utcnow
from node.deliver.association import open_association
from node.retrieve.common import LEASE, PROGRESS_EVERY, Permanent, Runner, Unreachable, ingest_part10
from node.security.tls import client_context

log = logging.getLogger(__name__)

# What the node processes (LGE is MR). Instances of other SOP classes (C-FIND IMAGE level answers
# their SOP Class UID) are left out of the plan; a SERIES-level C-GET fails their sub-operations.
STORAGE_CLASSES = (MRImageStorage, EnhancedMRImageStorage)
PENDING = (0xFF00, 0xFF01)
STATUS_OUT_OF_RESOURCES = 0xA702  # C-STORE sub-operation refused: the PACS may try again later
STATUS_CANNOT_UNDERSTAND = 0xC000


def _status_text(status: Dataset) -> str:
    code = int(status.Status)
    comment = status.get("ErrorComment")
    return f"0x{code:04X}" + (f" ({comment})" if comment else "")


class DimseRetrieval:
    """One retrieval attempt from ``src`` for ``runner`` (its store, sessions and progress writes)."""

    def __init__(self, runner: Runner, src: DimseSourceConfig) -> None:
        self.runner = runner
        self.src = src
        self.calling_ae = src.calling_ae_title or runner.owner

    # -- the association -------------------------------------------------------
    def _associate(self) -> Association:
        src = self.src
        ae = AE(ae_title=self.calling_ae)
        ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = src.timeout_seconds
        ae.connection_timeout = src.timeout_seconds
        ae.add_requested_context(StudyRootQueryRetrieveInformationModelFind)
        ae.add_requested_context(StudyRootQueryRetrieveInformationModelGet)
        for uid in STORAGE_CLASSES:
            ae.add_requested_context(uid)
        roles = [build_role(uid, scp_role=True) for uid in STORAGE_CLASSES]
        tls = (client_context(src.tls, self.runner.resolve), src.host) if src.tls.enabled else None
        assoc, failure = open_association(ae, src.host, src.port, src.ae_title, ext_neg=roles, tls_args=tls)
        if assoc is None or failure is not None:
            if assoc is not None and assoc.is_alive():
                assoc.abort()
            raise Unreachable(f"source {src.name!r}: {failure}")
        return assoc

    # -- C-FIND ------------------------------------------------------------------
    def _find(self, assoc: Association, level: str, **keys: str) -> list[Dataset]:
        q = Dataset()
        q.QueryRetrieveLevel = level
        q.StudyInstanceUID = keys.get("study", "")
        q.SeriesInstanceUID = keys.get("series", "")
        if level == "IMAGE":
            q.SOPInstanceUID = ""
            q.SOPClassUID = ""
        found: list[Dataset] = []
        for status, ident in assoc.send_c_find(q, StudyRootQueryRetrieveInformationModelFind):
            if "Status" not in status:  # no answer: DIMSE timeout, abort or closed connection
                raise Unreachable(f"C-FIND ({level}) on source {self.src.name!r}: no response (timeout or connection lost)")
            code = int(status.Status)
            if code in PENDING:
                if ident is not None:
                    found.append(ident)
            elif code != 0x0000:
                what = f"C-FIND ({level}) on source {self.src.name!r} failed: status {_status_text(status)}"
                raise Unreachable(what) if code & 0xFF00 == 0xA700 else Permanent(what)
        return found

    def query(self, study: str, wanted: list[str] | None) -> list[tuple[str, str]]:
        """(series UID, SOP Instance UID) of every instance to retrieve, by C-FIND."""
        name = self.src.name
        assoc = self._associate()
        try:
            series = sorted({str(d.SeriesInstanceUID) for d in self._find(assoc, "SERIES", study=study)
                             if d.get("SeriesInstanceUID")})
            if not series:
                raise Permanent(f"study {study} not found on source {name!r} (C-FIND lists no series)")
            if wanted:
                missing = sorted(set(wanted) - set(series))
                if missing:
                    raise Permanent(f"series {', '.join(missing)} of study {study} not found on source {name!r}")
                series = [u for u in series if u in set(wanted)]
            plan: list[tuple[str, str]] = []
            skipped = 0
            for se in series:
                for d in self._find(assoc, "IMAGE", study=study, series=se):
                    # Only what the node processes: a study that already holds our SEG/SR (or a
                    # CT, a report) must not make the retrieval wait for instances never sent.
                    if d.get("SOPClassUID") and str(d.SOPClassUID) not in STORAGE_CLASSES:
                        skipped += 1
                    elif d.get("SOPInstanceUID"):
                        plan.append((se, str(d.SOPInstanceUID)))
            if not plan:
                raise Permanent(f"study {study} on source {name!r} holds no MR instances"
                                f" ({skipped} of other SOP classes)")
            return plan
        finally:
            if assoc.is_established:
                assoc.release()

    # -- C-GET -------------------------------------------------------------------
    def fetch(self, rid: int, study: str, plan: list[tuple[str, str]]) -> None:
        """C-GET the instances of ``plan`` not yet indexed; each arrives as a C-STORE sub-operation."""
        runner, name = self.runner, self.src.name
        with runner.sessions() as s:
            indexed = set(s.scalars(select(Instance.sop_instance_uid).where(Instance.study_uid == study)))
        already = sum(1 for _, sop in plan if sop in indexed)
        state = {"done": already, "new": 0}
        errors: list[Exception] = []
        lock = threading.Lock()
        runner._set(rid, instances_retrieved=already, instances_already_stored=already)

        def on_store(event: Any) -> int:
            req = event.request
            sop = str(req.AffectedSOPInstanceUID)
            if sop in indexed:
                return 0x0000  # already stored (asked for a whole series): not stored twice
            try:
                data = event.encoded_dataset(include_meta=True)
                ingest_part10(runner.store, runner.owner, data, sop_class=str(req.AffectedSOPClassUID), sop=sop,
                              tsx=str(event.context.transfer_syntax), source=name)
            except Permanent as exc:
                errors.append(exc)
                return STATUS_CANNOT_UNDERSTAND
            except Exception as exc:  # disk / database: the attempt is retried
                errors.append(Unreachable(f"instance {sop} from source {name!r} not stored: {type(exc).__name__}: {exc}"))
                return STATUS_OUT_OF_RESOURCES
            with lock:
                indexed.add(sop)
                state["done"] += 1
                state["new"] += 1
                if state["new"] % PROGRESS_EVERY == 0:
                    runner._set(rid, instances_retrieved=state["done"], next_attempt_at=utcnow() + LEASE)
            return 0x0000

        todo: dict[str, list[str]] = {}
        for se, sop in plan:
            todo.setdefault(se, [])
            if sop not in indexed:
                todo[se].append(sop)
        assoc = self._associate()
        assoc.bind(evt.EVT_C_STORE, on_store)
        try:
            for se, missing in todo.items():
                if not missing:
                    continue
                total = sum(1 for s_, _ in plan if s_ == se)
                if len(missing) == total:
                    self._get(assoc, "SERIES", study, se, None, errors, state)
                else:
                    for sop in missing:
                        self._get(assoc, "IMAGE", study, se, sop, errors, state)
        finally:
            if assoc.is_established:
                assoc.release()
            runner._set(rid, instances_retrieved=state["done"])
        log.info("C-GET retrieval attempt ended", extra={"request_id": rid, "source": name, "stored": state["new"],
                                                          "already_stored": already, "planned": len(plan)})
        left = [sop for _, sop in plan if sop not in indexed]
        if left:
            raise Unreachable(f"C-GET from source {name!r}: {len(left)} instance(s) of the study not received "
                              f"(e.g. {left[0]})", progressed=state["new"] > 0)

    def _get(self, assoc: Association, level: str, study: str, series: str, sop: str | None,
             errors: list[Exception], state: dict[str, int]) -> None:
        q = Dataset()
        q.QueryRetrieveLevel = level
        q.StudyInstanceUID = study
        q.SeriesInstanceUID = series
        if sop is not None:
            q.SOPInstanceUID = sop
        final: Dataset | None = None
        for status, _ident in assoc.send_c_get(q, StudyRootQueryRetrieveInformationModelGet):
            if "Status" not in status:
                raise Unreachable(f"C-GET ({level}) on source {self.src.name!r}: no response (timeout or connection "
                                  "lost)", progressed=state["new"] > 0)
            if int(status.Status) not in PENDING:
                final = status
        if errors:  # a sub-operation the node refused or could not store
            err = errors[0]
            if isinstance(err, Unreachable):
                raise Unreachable(str(err), progressed=state["new"] > 0)
            raise err
        code = int(final.Status) if final is not None else 0
        if code not in (0x0000, 0xB000):
            what = f"C-GET ({level}) on source {self.src.name!r} failed: status {_status_text(final)}"  # type: ignore[arg-type]
            if code & 0xFF00 == 0xA700:
                raise Unreachable(what, progressed=state["new"] > 0)
            raise Permanent(what)
