"""FastAPI application: /health, /ready, /metrics, /api/jobs (with deliveries and re-runs), /api/series,
/api/inference-requests,
STOW-RS in (/dicom-web/studies), WADO-RS out (/dicom-web/studies/{study}/series/{series}[/instances/{sop}])."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Collection, Literal

from fastapi import FastAPI, Query, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

import node
from node import metrics
from node.api.health import HealthSources, health_router
from node.api.lookup import get_or_404
from node.api.openapi import (JOB_EXAMPLE, REVIEW_EXAMPLE, SERIES_EXAMPLE, VALIDATION_422, errors,
                              json_example)
from node.api.requests import requests_router
from node.api.rerun import rerun_router
from node.api.wado import wado_router
from node.api.auth import Authenticator, AuthMiddleware, Principal, document_security
from node.config import StowReceiveConfig
from node.receive.stow import StowReceiver, stow_router
from node.store.ingest import InstanceStore
from node.db.models import Job, Review, Series
from node.security import audit as A


class ShownFigures(BaseModel):
    """The figures on screen when the reader decided (what the decision is about)."""

    model_config = {"extra": "forbid"}
    lv_cavity_ml: float | None = None
    myocardium_ml: float | None = None
    mass_g: float | None = None
    infarct_ml: float | None = None
    infarct_percent: float | None = None
    mvo_ml: float | None = None
    mvo_percent: float | None = None
    transmural_segments: int | None = None
    covered_segments: int | None = None
    # The model's own doubt as the panel showed it (SR items LGE0005/LGE0006): an accept despite a
    # "needs careful review" banner is then on record.
    quality_score: float | None = Field(default=None, ge=0, le=1)
    needs_review_shown: bool | None = None


class Shown(BaseModel):
    """The version and numbers the reader saw (sent by the viewer with the decision)."""

    model_config = {"extra": "forbid"}
    seg_version: int | None = Field(default=None, ge=1)
    sr_sop_instance_uid: str | None = Field(default=None, max_length=64)
    figures: ShownFigures | None = None


class ReviewIn(BaseModel):
    model_config = {"json_schema_extra": {"examples": [
        {"decision": "accepted", "comment": "apex contour corrected", "seg_series_uid": REVIEW_EXAMPLE["seg_series_uid"],
         "seg_sop_instance_uid": REVIEW_EXAMPLE["seg_sop_instance_uid"], "shown": REVIEW_EXAMPLE["shown"]},
        {"decision": "rejected", "comment": "misses the apex"}]}}
    decision: Literal["accepted", "rejected"]
    comment: str | None = Field(default=None, max_length=1024)
    # No reviewer field: the reviewer is the authenticated identity (a body "reviewer" is ignored).
    seg_series_uid: str | None = Field(default=None, max_length=64)
    seg_sop_instance_uid: str | None = Field(default=None, max_length=64)
    shown: Shown | None = None


# Response models: nullable fields default to None only for the OpenAPI document (FastAPI drops
# nulls from its examples, so they must not be "required" there); responses carry every field.
class ReviewOut(BaseModel):
    id: int
    job_id: int
    decision: str
    comment: str | None = None
    reviewer: str | None = None
    seg_series_uid: str | None = None
    seg_sop_instance_uid: str | None = None
    shown: Shown | None = None
    created_at: datetime


class JobOut(BaseModel):
    id: int
    kind: str
    series_uid: str
    study_uid: str
    revision: int
    state: str
    stage: str | None = None
    attempts: int
    max_attempts: int
    reason: str | None = None
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    result: dict[str, Any]
    review: ReviewOut | None = None


class SeriesOut(BaseModel):
    series_uid: str
    study_uid: str
    modality: str | None = None
    series_description: str | None = None
    series_number: int | None = None
    state: str
    reason: str | None = None
    revision: int
    n_instances: int
    last_received_at: datetime
    completed_at: datetime | None = None


def latest_reviews(s: Session, job_ids: list[int]) -> dict[int, Review]:
    """The newest review of each job (None when never reviewed)."""
    out: dict[int, Review] = {}
    if not job_ids:
        return out
    for r in s.scalars(select(Review).where(Review.job_id.in_(job_ids)).order_by(Review.created_at, Review.id)):
        out[r.job_id] = r
    return out


def create_app(sessions: sessionmaker[Session], store_root: Any, scp_alive: Callable[[], bool], *,
               min_free_mb: int = 0, workers: Callable[[], tuple[int, int]] | None = None,
               auth: Authenticator | None = None, audit: A.AuditLog | None = None,
               store: InstanceStore | None = None, stow: StowReceiveConfig | None = None,
               sources: Collection[str] = (), destinations: Collection[str] = (),
               on_request: Callable[[], None] | None = None, cluster_heartbeat_s: float | None = None) -> FastAPI:
    """The API. ``auth`` None: authentication required and no credentials configured, so every
    endpoint but /health and /ready answers 401 (secure by default). With ``store``, STOW-RS in
    (node/receive/stow.py) unless ``stow.enabled`` is false. WADO-RS out (node/api/wado.py) always."""
    app = FastAPI(title="LGE AI node", version=node.__version__,
                  description="Cardiac LGE AI node: health, metrics, jobs and series, STOW-RS in, inference requests.")
    app.add_middleware(AuthMiddleware, authenticator=auth or Authenticator(), audit=audit or A.NULL_AUDIT)
    document_security(app)

    # Liveness and readiness (node/api/health.py): public, they report states, not data.
    app.include_router(health_router(HealthSources(sessions, Path(store_root), scp_alive, min_free_mb, workers,
                                                   cluster_heartbeat_s)))
    # Inference requests (node/api/requests.py): retrieve a study from a configured source.
    app.include_router(requests_router(sessions, sources, destinations, on_request))
    app.include_router(rerun_router(sessions))

    stow = stow or StowReceiveConfig()
    if store is not None and stow.enabled:
        app.include_router(stow_router(StowReceiver(store), stow.max_body_mb * 1024 * 1024))
    # WADO-RS out (node/api/wado.py): the stored files, for viewers and for the other nodes of a cluster.
    app.include_router(wado_router(sessions, Path(store_root)))

    @app.get("/metrics", tags=["operations"], summary="Prometheus metrics", response_class=Response,
             description="The node's counters and histograms in the Prometheus text format (instances received "
                         "by outcome, store latency, jobs, deliveries, API authentication failures). Role `read`, "
                         "or no credentials with `api.auth.public_metrics: true`.",
             responses={200: {"content": {CONTENT_TYPE_LATEST: {"schema": {"type": "string"}, "example":
                        "# TYPE lgenode_instances_received_total counter\n"
                        'lgenode_instances_received_total{outcome="stored"} 1234.0\n'}}}, **errors()})
    def prometheus() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    def _with_review(s: Session, jobs: list[Job]) -> list[JobOut]:
        latest = latest_reviews(s, [j.id for j in jobs])
        out = []
        for j in jobs:
            item = JobOut.model_validate(j, from_attributes=True)
            r = latest.get(j.id)
            item.review = ReviewOut.model_validate(r, from_attributes=True) if r else None
            out.append(item)
        return out

    @app.get("/api/jobs", response_model=list[JobOut], tags=["jobs"], summary="List jobs",
             description="Jobs, newest first, each with its latest review: state (queued, running, done, failed, "
                         "superseded), the stage it is in or failed in, attempts, the failure reason and the "
                         "result (measurements, the SEG/SR/PDF objects written). Filter by `state`, `study_uid`, "
                         "`series_uid`. Role `read`.",
             responses={200: json_example([JOB_EXAMPLE]), 422: {"description": VALIDATION_422}, **errors()})
    def jobs(request: Request, state: str | None = None, study_uid: str | None = None, series_uid: str | None = None,
             limit: int = Query(100, le=1000)) -> list[JobOut]:
        with sessions() as s:
            q = select(Job).order_by(Job.id.desc()).limit(limit)
            if state:
                q = q.where(Job.state == state)
            if study_uid:
                q = q.where(Job.study_uid == study_uid)
            if series_uid:
                q = q.where(Job.series_uid == series_uid)
            found = list(s.scalars(q))
            request.state.audit_detail = {"job_ids": [j.id for j in found]}  # which jobs were disclosed
            return _with_review(s, found)

    @app.get("/api/jobs/{job_id}", response_model=JobOut, tags=["jobs"], summary="One job",
             description="One job with its latest review (see `GET /api/jobs`). Role `read`.",
             responses={200: json_example(JOB_EXAMPLE), 422: {"description": VALIDATION_422}, **errors(404)})
    def job(job_id: int, request: Request) -> JobOut:
        with sessions() as s:
            j = get_or_404(s, Job, job_id, "job")
            request.state.audit_objects = [A.job(job_id, study_uid=j.study_uid, series_uid=j.series_uid)]
            return _with_review(s, [j])[0]

    @app.post("/api/jobs/{job_id}/review", response_model=ReviewOut, status_code=201, tags=["jobs"],
              summary="Record a review decision",
              description="Record a radiologist's accept/reject decision on a job's result, with the SEG version "
                          "and the figures the reader saw (append-only: every decision is kept). The reviewer "
                          "recorded is the authenticated identity; a `reviewer` field in the body is ignored. "
                          "Role `review`.",
              responses={201: json_example(REVIEW_EXAMPLE), 422: {"description": VALIDATION_422}, **errors(404)})
    def review(job_id: int, body: ReviewIn, request: Request) -> Review:
        """Record a radiologist's accept/reject decision (append-only history). The reviewer
        recorded is the authenticated caller."""
        principal: Principal = request.state.principal
        with sessions.begin() as s:
            j = get_or_404(s, Job, job_id, "job")
            request.state.audit_objects = [A.job(job_id, study_uid=j.study_uid, series_uid=j.series_uid,
                                                 decision=body.decision, seg_series_uid=body.seg_series_uid)]
            r = Review(job_id=job_id, reviewer=principal.name,
                       **body.model_dump(exclude={"shown"}),
                       shown=body.shown.model_dump() if body.shown is not None else None)
            s.add(r)
            s.flush()
            s.refresh(r)
            s.expunge(r)
        metrics.REVIEWS.labels(body.decision).inc()
        return r

    @app.get("/api/jobs/{job_id}/reviews", response_model=list[ReviewOut], tags=["jobs"],
             summary="A job's review history",
             description="Every decision recorded for the job, newest first. Role `read`.",
             responses={200: json_example([REVIEW_EXAMPLE]), 422: {"description": VALIDATION_422}, **errors(404)})
    def reviews(job_id: int, request: Request) -> list[Review]:
        with sessions() as s:
            j = get_or_404(s, Job, job_id, "job")
            request.state.audit_objects = [A.job(job_id, study_uid=j.study_uid, series_uid=j.series_uid)]
            return list(s.scalars(select(Review).where(Review.job_id == job_id)
                                  .order_by(Review.created_at.desc(), Review.id.desc())))

    @app.get("/api/series", response_model=list[SeriesOut], tags=["series"], summary="List series",
             description="Received series, most recently received first: state (receiving, selected, ignored, "
                         "...), the reason a series was selected or ignored by the LGE rules, instance count. "
                         "Filter by `state`. Role `read`.",
             responses={200: json_example([SERIES_EXAMPLE]), 422: {"description": VALIDATION_422}, **errors()})
    def series(request: Request, state: str | None = None, limit: int = Query(100, le=1000)) -> list[Series]:
        with sessions() as s:
            q = select(Series).order_by(Series.last_received_at.desc()).limit(limit)
            if state:
                q = q.where(Series.state == state)
            found = list(s.scalars(q))
            request.state.audit_detail = {"series_uids": [x.series_uid for x in found]}
            return found

    return app
