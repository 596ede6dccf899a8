"""Inference requests over HTTP: ``POST /api/inference-requests`` queues a study to retrieve from a
configured source and process (202 + id); ``GET /api/inference-requests/{id}`` reports its stages,
counts, the results' UIDs and the failure reason. The retrieval itself runs in the node's sweep
(`node.retrieve.dicomweb.RequestRunner`). Authorisation: see `node.api.auth.required_role`
(POST: role ``request`` or ``admin``; GET: ``read``)."""

from __future__ import annotations

from collections.abc import Callable, Collection
from datetime import datetime
from typing import Any

from fastapi import APIRouter, HTTPException, Request
from pydantic import BaseModel, Field, field_validator
from sqlalchemy.orm import Session, sessionmaker

from node.api.lookup import get_or_404
from node.api.openapi import REQUEST_EXAMPLE, STUDY_UID, VALIDATION_422, errors, json_example
from node.db.models import InferenceRequest, RequestState, utcnow
from node.store.uids import is_valid_uid

_UID = Field(min_length=1, max_length=64)


def _check_uid(v: str) -> str:
    if not is_valid_uid(v):
        raise ValueError(f"{v!r} is not a valid DICOM UID")
    return v


class InferenceRequestIn(BaseModel):
    model_config = {"extra": "forbid",
                    "json_schema_extra": {"examples": [
                        {"study_uid": STUDY_UID, "source": "pacs", "transaction_id": "ris-4711", "priority": 0},
                        {"study_uid": STUDY_UID, "series_uids": [REQUEST_EXAMPLE["found_series"][0]],
                         "source": "pacs-dimse", "destinations": ["pacs"], "priority": 10}]}}
    study_uid: str = _UID
    series_uids: list[str] | None = Field(default=None, max_length=1000,
                                          description="Only these series of the study (default: all)")
    source: str = Field(min_length=1, max_length=64, description="A configured source (node.yaml sources:)")
    destinations: list[str] | None = Field(default=None, max_length=32,
                                           description="Configured destinations for the results (default: all)")
    priority: int = Field(default=0, ge=-100, le=100, description="Higher is retrieved first")
    transaction_id: str | None = Field(default=None, max_length=128, description="The caller's own id")

    _uid = field_validator("study_uid")(classmethod(lambda cls, v: _check_uid(v)))

    @field_validator("series_uids")
    @classmethod
    def _series(cls, v: list[str] | None) -> list[str] | None:
        return None if not v else sorted({_check_uid(u) for u in v})


class Accepted(BaseModel):
    model_config = {"json_schema_extra": {"examples": [{"id": 5, "state": "queued"}]}}
    id: int
    state: str


class InferenceRequestOut(BaseModel):
    # Nullable fields default to None for the OpenAPI document only (see node/api/app.py ReviewOut).
    id: int
    transaction_id: str | None = None
    study_uid: str
    series_uids: list[str] | None = None
    source: str
    destinations: list[str] | None = None
    priority: int
    state: str
    stages: dict[str, Any] = Field(description="When each stage was entered")
    found_series: list[str] | None = None
    instances_expected: int | None = None
    instances_retrieved: int
    instances_already_stored: int
    attempts: int
    job_ids: list[int] | None = None
    results: list[dict[str, Any]] | None = Field(default=None, description="SEG/SR/PDF: kind, sop_instance_uid, series_uid, job_id")
    reason: str | None = None
    principal: str | None = None
    created_at: datetime
    updated_at: datetime


def queue_request(sessions: sessionmaker[Session], body: InferenceRequestIn, principal: str | None) -> int:
    """Record a new request (state queued); shared by the API and ``lgenode request``."""
    now = utcnow()
    with sessions.begin() as s:
        r = InferenceRequest(transaction_id=body.transaction_id, study_uid=body.study_uid,
                             series_uids=body.series_uids, source=body.source, destinations=body.destinations,
                             priority=body.priority, state=RequestState.QUEUED,
                             stages={RequestState.QUEUED: now.isoformat(timespec="seconds")},
                             instances_retrieved=0, instances_already_stored=0, attempts=0,
                             next_attempt_at=now, principal=principal, created_at=now, updated_at=now)
        s.add(r)
        s.flush()
        return int(r.id)


def check_names(body: InferenceRequestIn, sources: Collection[str], destinations: Collection[str]) -> str | None:
    """Why ``body`` names something not configured (None: all known)."""
    if body.source not in sources:
        return f"unknown source {body.source!r} (configured: {sorted(sources)})"
    unknown = sorted(set(body.destinations or ()) - set(destinations))
    if unknown:
        return f"unknown destination(s) {unknown} (configured: {sorted(destinations)})"
    return None


def requests_router(sessions: sessionmaker[Session], sources: Collection[str], destinations: Collection[str],
                    on_queued: Callable[[], None] | None = None) -> APIRouter:
    router = APIRouter(tags=["inference requests"])

    @router.post("/api/inference-requests", status_code=202, response_model=Accepted,
                 summary="Request the analysis of a study held by a source",
                 description="Queue a study (optionally only some of its series) for retrieval from a configured "
                             "`source` (node.yaml `sources:`; QIDO-RS + WADO-RS or C-FIND + C-GET) and processing; "
                             "the results go to `destinations` (default: every configured destination). Answers "
                             "202 with the id to poll at `GET /api/inference-requests/{id}`. A `source` or "
                             "destination that is not configured is refused 422. Role `request`.",
                 responses={202: json_example({"id": 5, "state": "queued"}),
                            422: {"description": VALIDATION_422 + "; or an unknown source or destination "
                                                                  "(`detail` names it)"}, **errors()})
    def create(body: InferenceRequestIn, request: Request) -> Accepted:
        """Queue a study for retrieval from ``source`` and processing; answers 202 with the id to poll."""
        problem = check_names(body, sources, destinations)
        if problem:
            raise HTTPException(422, problem)
        rid = queue_request(sessions, body, request.state.principal.name)
        request.state.audit_detail = {"inference_request": rid, "study_uid": body.study_uid, "source": body.source}
        if on_queued is not None:
            on_queued()
        return Accepted(id=rid, state=RequestState.QUEUED)

    @router.get("/api/inference-requests/{request_id}", response_model=InferenceRequestOut,
                summary="State of an inference request",
                description="Where the request is (queued, querying, retrieving, stored, processing, done, failed) "
                            "and when it entered each stage; instance counts; the job ids; the SEG/SR/PDF results "
                            "(kind, UIDs, job) when done, or the failure reason. Role `read`.",
                responses={200: json_example(REQUEST_EXAMPLE), 422: {"description": VALIDATION_422},
                           **errors(404, e404={"detail": "no inference request 5"})})
    def get(request_id: int, request: Request) -> InferenceRequest:
        with sessions() as s:
            r = get_or_404(s, InferenceRequest, request_id, "inference request")
            request.state.audit_detail = {"inference_request": request_id, "study_uid": r.study_uid}
            return r

    return router
