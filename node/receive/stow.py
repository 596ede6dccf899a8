"""STOW-RS in: ``POST /dicom-web/studies[/{study}]`` (PS3.18 10.5), the HTTP twin of the C-STORE SCP.

Why here, in ``node/receive/`` and not in ``node/api/``: this is how instances *enter* the node,
the same stage as ``scp.py``; the API application only mounts the router (as it mounts health).
Each part of the ``multipart/related; type="application/dicom"`` body goes through the SCP's
path: the SOP class and transfer syntax must be ones the SCP would negotiate
(``contexts.py``), ``parse_header`` checks the bytes (file meta vs dataset, UIDs, truncation),
``InstanceStore.ingest`` writes (fsync) and indexes them before the response, so a series that
arrives this way is completed, selected and processed like one received by C-STORE. Duplicates
are Success, a duplicate with other content keeps the first copy (logged and counted, as the SCP
does), and every refusal carries the DICOM status the SCP would send (0xA700 out of resources,
0xA900 dataset mismatch, 0xC000 cannot understand, 0xC001 invalid UID; plus 0x0122 SOP class and
0xC122 transfer syntax not supported, which the SCP says by refusing the presentation context).

The body is parsed as it arrives (python-multipart's streaming parser) and each instance is
stored as soon as its part ends, so only one instance is held in memory; ``api.stow.max_body_mb``
bounds the body (413). The response is ``application/dicom+json`` with ReferencedSOPSequence and
FailedSOPSequence (FailureReason per instance); HTTP 200 all stored, 202 some failed, 409 none.
No RetrieveURL (WADO-RS out is node/api/wado.py; an optional attribute not filled in yet).

``calling_ae`` of the index rows holds the API identity (cut to the column's 16 characters; the
full name and address are in the audit record, one "DICOM Instances Transferred" per request,
written by the auth middleware from what this route puts in ``request.state``).
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from io import BytesIO
from typing import Any

from fastapi import APIRouter, Request, Response
from pydicom import Dataset, dcmread
from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.concurrency import run_in_threadpool

from node import metrics
from node.receive.contexts import STORAGE_SOP_CLASSES, TRANSFER_SYNTAXES
from node.receive.header import STATUS_CANNOT_UNDERSTAND, STATUS_DATASET_MISMATCH, Refusal, parse_header
from node.security import audit as A
from node.store.ingest import InstanceStore, ingest_refusal
from node.store.uids import is_valid_uid

log = logging.getLogger(__name__)

STATUS_SOP_CLASS_NOT_SUPPORTED = 0x0122  # PS3.4 C.4.2.1.4 / PS3.18 Table 10.5.3-4
STATUS_TRANSFER_SYNTAX_NOT_SUPPORTED = 0xC122  # PS3.18 Table 10.5.3-4
DICOM_JSON = "application/dicom+json"
_ACCEPTED_TSX = frozenset(TRANSFER_SYNTAXES)


@dataclass
class Outcome:
    """What became of one part: stored (``status`` 0) or refused with a status and a reason."""

    sop_class_uid: str = ""
    sop_instance_uid: str = ""
    status: int = 0
    reason: str = ""
    duplicate: bool = False
    study_uid: str | None = None
    series_uid: str | None = None


def _meta_uids(data: bytes) -> tuple[str, str, str]:
    """(SOP class, SOP instance, transfer syntax) from a part's file meta; Refusal if it has none."""
    try:
        meta = dcmread(BytesIO(data), stop_before_pixels=True, specific_tags=["SOPInstanceUID"]).file_meta
        return (str(meta.MediaStorageSOPClassUID), str(meta.MediaStorageSOPInstanceUID),
                str(meta.TransferSyntaxUID))
    except Exception as exc:  # not Part 10, no file meta, a meta element missing...
        raise Refusal(STATUS_CANNOT_UNDERSTAND, f"not a DICOM file with file meta information: "
                                                f"{type(exc).__name__}: {str(exc)[:200]}") from None


class StowReceiver:
    """Stores the parts of STOW-RS requests through the SCP's durable path (see the module doc)."""

    def __init__(self, store: InstanceStore) -> None:
        self.store = store

    def store_part(self, data: bytes, content_type: str | None, study: str | None, source: str) -> Outcome:
        t0 = time.perf_counter()
        out = Outcome()
        try:
            if content_type is not None:
                mt, _ = parse_options_header(content_type)
                if mt != b"application/dicom":
                    raise Refusal(STATUS_CANNOT_UNDERSTAND, f"part is {mt.decode('latin-1')[:60]!r}, "
                                                            "not application/dicom")
            out.sop_class_uid, out.sop_instance_uid, tsx = _meta_uids(data)
            if out.sop_class_uid not in STORAGE_SOP_CLASSES:
                raise Refusal(STATUS_SOP_CLASS_NOT_SUPPORTED, "SOP class not accepted by this node")
            if tsx not in _ACCEPTED_TSX:
                raise Refusal(STATUS_TRANSFER_SYNTAX_NOT_SUPPORTED, "transfer syntax not accepted by this node")
            header = parse_header(data, affected_sop_class=out.sop_class_uid,
                                  affected_sop_instance=out.sop_instance_uid, transfer_syntax=tsx)
            out.study_uid, out.series_uid = header.study_uid, header.series_uid
            if study is not None and header.study_uid != study:
                raise Refusal(STATUS_DATASET_MISMATCH, "StudyInstanceUID differs from the study in the request URL")
            result = self.store.ingest(header, data, source)
        except Exception as exc:
            refusal = ingest_refusal(exc)
            if refusal.cause == "error":  # disk or database failure: the sender keeps the instance and retries
                log.error("instance refused: could not be stored", exc_info=True,
                          extra={"sop_instance_uid": out.sop_instance_uid[:80], "source": source})
            out.status, out.reason = refusal.status, refusal.reason
            metrics.STOW_INSTANCES.labels("refused" if refusal.permanent else "out_of_resources").inc()
        if out.status:
            log.warning("instance refused", extra={"sop_instance_uid": out.sop_instance_uid[:80], "source": source,
                                                   "status": f"0x{out.status:04X}", "reason": out.reason,
                                                   "transport": "stow-rs"})
            return out
        if result.conflict:
            metrics.DUPLICATE_CONFLICTS.inc()
            log.warning("duplicate SOP Instance UID with different content: kept the first copy",
                        extra={"sop_instance_uid": out.sop_instance_uid, "series_uid": out.series_uid,
                               "source": source, "stored_bytes": result.stored_size, "received_bytes": len(data)})
        out.duplicate = result.duplicate
        metrics.STOW_INSTANCES.labels("duplicate" if result.duplicate else "stored").inc()
        metrics.STORE_SECONDS.observe(time.perf_counter() - t0)
        return out


def response_dataset(outcomes: list[Outcome]) -> Dataset:
    """The PS3.18 Store Instances Response (Table 10.5.3-3): referenced and failed instances."""
    ds = Dataset()
    ok, failed = [], []
    for o in outcomes:
        item = Dataset()
        item.ReferencedSOPClassUID = o.sop_class_uid
        item.ReferencedSOPInstanceUID = o.sop_instance_uid
        if o.status:
            item.FailureReason = o.status
            failed.append(item)
        else:
            ok.append(item)
    if failed:
        ds.FailedSOPSequence = failed
    if ok:
        ds.ReferencedSOPSequence = ok
    return ds


def http_status(outcomes: list[Outcome]) -> int:
    n_failed = sum(1 for o in outcomes if o.status)
    return 200 if n_failed == 0 else 409 if n_failed == len(outcomes) else 202


class _Parts:
    """python-multipart callbacks collecting each part's headers and bytes; ended parts queue up
    in ``done`` until the route stores them."""

    def __init__(self) -> None:
        self.headers: dict[str, str] = {}
        self._field = bytearray()
        self._value = bytearray()
        self._data = bytearray()
        self.done: list[tuple[dict[str, str], bytes]] = []
        self.count = 0
        self.ended = False

    def callbacks(self) -> dict[str, Callable[..., None]]:
        return {
            "on_part_begin": self._begin,
            "on_header_field": lambda b, s, e: self._field.extend(b[s:e]),
            "on_header_value": lambda b, s, e: self._value.extend(b[s:e]),
            "on_header_end": self._header_end,
            "on_part_data": lambda b, s, e: self._data.extend(b[s:e]),
            "on_part_end": self._end,
            "on_end": self._finish,
        }

    def _begin(self) -> None:
        self.headers, self._data = {}, bytearray()

    def _header_end(self) -> None:
        self.headers[self._field.decode("latin-1").strip().lower()] = self._value.decode("latin-1").strip()
        self._field, self._value = bytearray(), bytearray()

    def _end(self) -> None:
        self.done.append((self.headers, bytes(self._data)))
        self._data = bytearray()
        self.count += 1

    def _finish(self) -> None:
        self.ended = True


def _problem(code: int, detail: str, **extra: Any) -> Response:
    return Response(json.dumps({"detail": detail, **extra}), status_code=code, media_type="application/json")


def _audit(request: Request, outcomes: list[Outcome], code: int) -> None:
    """What the auth middleware writes into this request's "DICOM Instances Transferred" record."""
    studies: dict[str, dict[str, Any]] = {}
    for o in outcomes:
        if o.status or o.study_uid is None:
            continue
        s = studies.setdefault(o.study_uid, {"stored": 0, "duplicates": 0, "series": defaultdict(int)})
        s["duplicates" if o.duplicate else "stored"] += 1
        s["series"][o.series_uid] += 1
    refused = Counter(f"0x{o.status:04X}" for o in outcomes if o.status)
    request.state.audit_objects = [A.study(uid, stored=s["stored"], duplicates=s["duplicates"],
                                           series=dict(s["series"])) for uid, s in studies.items()]
    request.state.audit_detail = {
        "counts": {"stored": sum(s["stored"] for s in studies.values()),
                   "duplicates": sum(s["duplicates"] for s in studies.values()), "refused": sum(refused.values())},
        "refused_by_status": dict(refused)}
    if refused and code < 400:
        request.state.audit_outcome = A.MINOR_FAILURE


def _dicom_json(example: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {DICOM_JSON: {"schema": {
        "type": "object", "description": "DICOM JSON (PS3.18 F.2): the Store Instances Response"},
        "example": example}}}


def _problem_doc(description: str, detail: str, **extra: Any) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": {
        "type": "object", "required": ["detail"], "properties": {"detail": {"type": "string"}}},
        "example": {"detail": detail, **extra}}}}


def _ref(sop_class: str, sop: str, failure: int | None = None) -> dict[str, Any]:
    item = {"00081150": {"vr": "UI", "Value": [sop_class]}, "00081155": {"vr": "UI", "Value": [sop]}}
    if failure is not None:
        item["00081197"] = {"vr": "US", "Value": [failure]}
    return item


_MR, _UID = "1.2.840.10008.5.1.4.1.1.4", "1.2.826.0.1.3680043.8.498.1000"
_STORED = {"00081199": {"vr": "SQ", "Value": [_ref(_MR, f"{_UID}1"), _ref(_MR, f"{_UID}2")]}}
_FAILED = {"00081198": {"vr": "SQ", "Value": [_ref("1.2.840.10008.5.1.4.1.1.2", f"{_UID}3", 0x0122)]}}
_BODY_EXAMPLE = ('--b0undary\r\nContent-Type: application/dicom\r\n\r\n<DICOM Part 10 file: preamble, DICM, '
                 'file meta, dataset>\r\n--b0undary\r\nContent-Type: application/dicom\r\n\r\n<next instance>'
                 '\r\n--b0undary--\r\n')
_DESCRIPTION = (
    "STOW-RS (PS3.18 10.5): `multipart/related; type=\"application/dicom\"`, one DICOM file with file meta "
    "per part. Each instance is checked and stored like a C-STORE (SOP classes and transfer syntaxes the SCP "
    "accepts, header checks, fsync and index before the answer, duplicates answered as stored, "
    "`storage.min_free_mb`) and its series is completed, selected and processed like a C-STORE one. The answer "
    "lists stored instances in ReferencedSOPSequence (0008,1199) and the others in FailedSOPSequence "
    "(0008,1198) with FailureReason (0008,1197): A700 out of resources (send again later), A900 dataset does "
    "not match its file meta or the study in the URL, C000 not understood, C001 invalid UID, 0122 SOP class "
    "and C122 transfer syntax not accepted. Role `store` (a role for senders only).")
_STOW_DOC: dict[str, Any] = {
    "requestBody": {"required": True, "content": {'multipart/related; type="application/dicom"': {
        "schema": {"type": "string", "format": "binary"}, "example": _BODY_EXAMPLE}}},
    "responses": {
        "200": _dicom_json(_STORED, "every instance stored (or already stored)"),
        "202": _dicom_json({**_FAILED, **_STORED}, "some instances stored, the others in FailedSOPSequence"),
        "409": _dicom_json(_FAILED, "no instance stored: each in FailedSOPSequence with its FailureReason"),
        "400": _problem_doc("not a (complete) multipart body, or the study in the URL is not a UID; instances in "
                            "complete parts before the error are stored (`stored_before_the_error`)",
                            "not a complete multipart body (closing boundary missing)", stored_before_the_error=2),
        "401": _problem_doc("no or invalid credentials", "not authenticated", reason="no credentials"),
        "403": _problem_doc("a key or token without the role store (or admin)", "not authorised",
                            reason="role store required"),
        "503": _problem_doc("the OIDC issuer's keys could not be fetched", "authentication unavailable: ..."),
        "413": _problem_doc("body larger than api.stow.max_body_mb", "body exceeds api.stow.max_body_mb",
                            stored_before_the_limit=0),
        "415": _problem_doc("not multipart/related; type=application/dicom",
                            'expected Content-Type multipart/related; type="application/dicom"'),
    }}


def stow_router(receiver: StowReceiver, max_body_bytes: int) -> APIRouter:
    """The STOW-RS routes; the role they need (``store``) is the auth middleware's business."""
    router = APIRouter(tags=["DICOMweb"])

    async def receive(request: Request, study: str | None) -> Response:
        if study is not None and not is_valid_uid(study):
            return _problem(400, "the study in the URL is not a valid UID")
        mt, params = parse_options_header(request.headers.get("content-type"))
        part_type = params.get(b"type", b"application/dicom").strip(b'"').lower()
        if mt != b"multipart/related" or part_type != b"application/dicom":
            return _problem(415, 'expected Content-Type multipart/related; type="application/dicom"')
        boundary = params.get(b"boundary")
        if not boundary:
            return _problem(400, "multipart/related without a boundary")
        length = request.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > max_body_bytes:
            return _problem(413, f"body of {length} bytes exceeds api.stow.max_body_mb")
        principal = getattr(request.state, "principal", None)
        source = (principal.name if principal is not None else "anonymous")[:16]
        parts = _Parts()
        try:
            parser = MultipartParser(boundary, parts.callbacks())
        except Exception as exc:
            return _problem(400, f"unusable boundary: {exc}")
        outcomes: list[Outcome] = []
        received = 0

        async def store_done() -> None:
            while parts.done:
                headers, data = parts.done.pop(0)
                outcomes.append(await run_in_threadpool(receiver.store_part, data, headers.get("content-type"),
                                                        study, source))

        try:
            async for chunk in request.stream():
                received += len(chunk)
                if received > max_body_bytes:
                    _audit(request, outcomes, 413)
                    return _problem(413, "body exceeds api.stow.max_body_mb",
                                    stored_before_the_limit=sum(1 for o in outcomes if not o.status))
                parser.write(chunk)
                await store_done()
            parser.finalize()
            await store_done()
        except MultipartParseError as exc:
            _audit(request, outcomes, 400)
            return _problem(400, f"malformed multipart body: {exc}",
                            stored_before_the_error=sum(1 for o in outcomes if not o.status))
        if not parts.ended:
            # Cut short (or no boundary at all): instances in complete parts are stored; the
            # sender learns the request failed and re-sends (duplicates are recognised).
            _audit(request, outcomes, 400)
            return _problem(400, "not a complete multipart body (closing boundary missing)" if parts.count
                            else "no multipart part found in the body",
                            stored_before_the_error=sum(1 for o in outcomes if not o.status))
        if not outcomes:
            return _problem(400, "the multipart body has no part")
        code = http_status(outcomes)
        _audit(request, outcomes, code)
        log.info("STOW-RS request answered", extra={
            "status": code, "source": source, "study_in_url": study, "instances": len(outcomes),
            "refused": sum(1 for o in outcomes if o.status)})
        return Response(response_dataset(outcomes).to_json(), status_code=code, media_type=DICOM_JSON)

    @router.post("/dicom-web/studies", openapi_extra=_STOW_DOC, response_class=Response,
                 summary="STOW-RS: store instances (role store)", description=_DESCRIPTION)
    async def store_instances(request: Request) -> Response:
        return await receive(request, None)

    @router.post("/dicom-web/studies/{study}", openapi_extra=_STOW_DOC, response_class=Response,
                 summary="STOW-RS: store instances of one study (role store)",
                 description=_DESCRIPTION + " Every instance must belong to the study `{study}` (else A900).")
    async def store_study_instances(study: str, request: Request) -> Response:
        return await receive(request, study)

    return router


__all__ = ["StowReceiver", "Outcome", "stow_router", "response_dataset", "http_status",
           "STATUS_SOP_CLASS_NOT_SUPPORTED", "STATUS_TRANSFER_SYNTAX_NOT_SUPPORTED"]
