"""WADO-RS out (PS3.18 10.4): the node's stored instances as ``multipart/related; type="application/dicom"``,
and the QIDO-RS list of a series' instances that goes with it (PS3.18 10.6).

``GET /dicom-web/studies/{study}/series/{series}`` and ``.../series/{series}/instances/{sop}``
answer with the stored Part 10 files, byte for byte, streamed from disk (the node never
transcodes). Accept (PS3.18 8.7.3): a ``multipart/related`` media range whose ``type`` is
``application/dicom`` (or a wildcard), with ``transfer-syntax=*``, the stored transfer syntax, or
none (then the stored one is sent: the node does not convert); ``*/*`` and no Accept header get
the same. Any other request is 406 Not Acceptable. Unknown UIDs, or UIDs that do not belong
together, are 404. A node serves only the files on its own disk: in a cluster without shared
storage (``cluster:``) an instance held by another node is 404 here (node/cluster/fetch.py asks
the right node). Needs the ``read`` role; each request is audited as a "DICOM Instances
Transferred" (action R) with the study and the instances sent (node/api/auth.py).

``GET /dicom-web/studies/{study}/series/{series}/instances`` (QIDO-RS) lists the instances on this
node's disk as ``application/dicom+json``: SOP Class/Instance, Study/Series UIDs, Instance Number
and the Retrieve URL of each; no query keys beyond the path (an empty list is ``200 []``).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

from fastapi import APIRouter, HTTPException, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse
from pydicom.dataset import Dataset
from python_multipart.multipart import parse_options_header
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from node import metrics
from node.api.openapi import SERIES_UID, STUDY_UID, errors
from node.db.models import Instance
from node.security import audit as A

DICOM = "application/dicom"
CHUNK = 1024 * 1024
_TYPE_OK = frozenset({DICOM, "application/*", "*/*"})
_SOP = "1.2.826.0.1.3680043.8.498.10007"
QIDO_EXAMPLE = {"00080016": {"vr": "UI", "Value": ["1.2.840.10008.5.1.4.1.1.4"]},
                "00080018": {"vr": "UI", "Value": [_SOP]}, "0020000D": {"vr": "UI", "Value": [STUDY_UID]},
                "0020000E": {"vr": "UI", "Value": [SERIES_UID]}, "00200013": {"vr": "IS", "Value": [1]},
                "00081190": {"vr": "UR", "Value": [
                    f"https://node-a:8080/dicom-web/studies/{STUDY_UID}/series/{SERIES_UID}/instances/{_SOP}"]}}


def acceptable(accept: str | None, stored: set[str]) -> bool:
    """Whether an Accept header admits the stored files as they are (transfer syntaxes ``stored``).

    Each comma-separated media range is tried; ``q`` values are ignored since only one
    representation exists.
    """
    if not accept or not accept.strip():
        return True
    for item in accept.split(","):
        mt, params = parse_options_header(item.strip())
        media = mt.decode("latin-1").lower()
        opts = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in params.items()}
        if media == "*/*":
            return True
        if media != "multipart/related":
            continue
        if opts.get("type", DICOM).lower() not in _TYPE_OK:
            continue
        tsx = opts.get("transfer-syntax")
        if tsx is None or tsx == "*" or stored == {tsx}:
            return True
    return False


def _parts(files: list[tuple[Path, str]], boundary: str) -> Iterator[bytes]:
    for path, tsx in files:
        yield (f"--{boundary}\r\nContent-Type: {DICOM}; transfer-syntax={tsx}\r\n\r\n").encode("ascii")
        with open(path, "rb") as f:
            while chunk := f.read(CHUNK):
                yield chunk
        yield b"\r\n"
        metrics.WADO_INSTANCES.inc()
    yield f"--{boundary}--\r\n".encode("ascii")


def _service_root(request: Request) -> str:
    """This service's DICOMweb root as the caller reached it. Some clients (dicomweb-client) send
    a Host header without the port: the port the request came in on is added then."""
    url = request.base_url
    server = request.scope.get("server")
    if url.port is None and server and server[1] not in (80, 443):
        url = url.replace(port=server[1])
    return str(url).rstrip("/") + "/dicom-web"


def _qido_item(r: Instance, base: str) -> dict[str, object]:
    """One instance as DICOM JSON (pydicom's encoder, PS3.18 F.2)."""
    ds = Dataset()
    ds.SOPClassUID, ds.SOPInstanceUID = r.sop_class_uid, r.sop_instance_uid
    ds.StudyInstanceUID, ds.SeriesInstanceUID = r.study_uid, r.series_uid
    number = str((r.attrs or {}).get("InstanceNumber") or "").strip()
    if number.lstrip("+-").isdigit():  # an unusable stored value is left out, not a 500
        ds.InstanceNumber = int(number)
    ds.RetrieveURL = f"{base}/studies/{r.study_uid}/series/{r.series_uid}/instances/{r.sop_instance_uid}"
    return ds.to_json_dict()


def wado_router(sessions: sessionmaker[Session], store_root: Path) -> APIRouter:
    """The WADO-RS routes over the index ``sessions`` and the files under ``store_root``."""
    router = APIRouter(tags=["DICOMweb"])

    def serve(request: Request, study: str, series: str, sop: str | None) -> StreamingResponse:
        q = select(Instance).where(Instance.study_uid == study, Instance.series_uid == series)
        if sop is not None:
            q = q.where(Instance.sop_instance_uid == sop)
        with sessions() as s:
            rows = list(s.scalars(q.order_by(Instance.sop_instance_uid)))
        what = f"instance {sop}" if sop else f"series {series}"
        if not rows:
            raise HTTPException(404, f"{what} of study {study} is not stored here")
        # Only the files on this node's disk (in a cluster, other nodes serve theirs).
        here = [(store_root / r.path, r) for r in rows if (store_root / r.path).is_file()]
        if not here:
            holders = sorted({r.node for r in rows if r.node})
            raise HTTPException(404, f"{what} of study {study} is not on this node's disk"
                                     + (f" (held by node {', '.join(holders)})" if holders else ""))
        if not acceptable(request.headers.get("accept"), {r.transfer_syntax_uid for _, r in here}):
            raise HTTPException(406, "this node sends instances as stored (multipart/related; "
                                     f"type=\"{DICOM}\"; transfer-syntax=* or "
                                     f"{', '.join(sorted({r.transfer_syntax_uid for _, r in here}))}); "
                                     "it does not transcode")
        request.state.audit_objects = [A.study(study, series_uid=series,
                                               sop_instance_uids=[r.sop_instance_uid for _, r in here])]
        boundary = uuid.uuid4().hex
        return StreamingResponse(_parts([(p, r.transfer_syntax_uid) for p, r in here], boundary),
                                 media_type=f'multipart/related; type="{DICOM}"; boundary={boundary}')

    retrieve_responses = {**errors(404, 406, e404={"detail": f"series {SERIES_UID} of study {STUDY_UID} is not stored here"}),
                          200: {"description": "The stored Part 10 files, one per part", "content": {
                              f'multipart/related; type="{DICOM}"': {"schema": {"type": "string", "format": "binary"}}}}}
    @router.get("/dicom-web/studies/{study}/series/{series}", response_class=StreamingResponse,
                summary="WADO-RS: retrieve a series", responses=retrieve_responses,  # type: ignore[arg-type]
                description="The series' stored instances (those on this node's disk), as Part 10 files.")
    def retrieve_series(study: str, series: str, request: Request) -> StreamingResponse:
        return serve(request, study, series, None)

    @router.get("/dicom-web/studies/{study}/series/{series}/instances/{sop}", response_class=StreamingResponse,
                summary="WADO-RS: retrieve an instance", responses=retrieve_responses,  # type: ignore[arg-type]
                description="One stored instance as its Part 10 file, in a one-part multipart/related body.")
    def retrieve_instance(study: str, series: str, sop: str, request: Request) -> StreamingResponse:
        return serve(request, study, series, sop)

    @router.get("/dicom-web/studies/{study}/series/{series}/instances", response_class=Response, summary="QIDO-RS: the instances of a series",
                responses={**errors(), 200: {"description": "The instances, DICOM JSON", "content": {
                    "application/dicom+json": {"schema": {"type": "array", "items": {"type": "object"}},
                                               "example": [QIDO_EXAMPLE]}}}},  # type: ignore[dict-item]
                description="The series' instances on this node's disk, as DICOM JSON with their Retrieve URLs.")
    def search_instances(study: str, series: str, request: Request) -> Response:
        with sessions() as s:
            rows = list(s.scalars(select(Instance).where(Instance.study_uid == study, Instance.series_uid == series)
                                  .order_by(Instance.sop_instance_uid)))
        here = [r for r in rows if (store_root / r.path).is_file()]
        base = _service_root(request)
        out = [_qido_item(r, base) for r in here]
        request.state.audit_detail = {"study_uid": study, "series_uid": series, "instances": len(out)}
        return JSONResponse(out, media_type="application/dicom+json")

    return router


__all__ = ["wado_router", "acceptable"]
