"""FastAPI application: /health, /ready, /metrics, /api/jobs, /api/series."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Literal

from fastapi import FastAPI, HTTPException, Query, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

import node
from node import metrics
from node.api.health import HealthSources, health_router
from node.db.models import Job, Review, Series


class ReviewIn(BaseModel):
    decision: Literal["accepted", "rejected"]
    comment: str | None = Field(default=None, max_length=1024)
    reviewer: str | None = Field(default=None, max_length=128)
    seg_series_uid: str | None = Field(default=None, max_length=64)
    seg_sop_instance_uid: str | None = Field(default=None, max_length=64)


class ReviewOut(BaseModel):
    id: int
    job_id: int
    decision: str
    comment: str | None
    reviewer: str | None
    seg_series_uid: str | None
    seg_sop_instance_uid: str | None
    created_at: datetime


class JobOut(BaseModel):
    id: int
    kind: str
    series_uid: str
    study_uid: str
    revision: int
    state: str
    stage: str | None
    attempts: int
    max_attempts: int
    reason: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    result: dict[str, Any]
    review: ReviewOut | None = None


class SeriesOut(BaseModel):
    series_uid: str
    study_uid: str
    modality: str | None
    series_description: str | None
    series_number: int | None
    state: str
    reason: str | None
    revision: int
    n_instances: int
    last_received_at: datetime
    completed_at: datetime | None


def latest_reviews(s: Session, job_ids: list[int]) -> dict[int, Review]:
    """The newest review of each job (None when never reviewed)."""
    out: dict[int, Review] = {}
    if not job_ids:
        return out
    for r in s.scalars(select(Review).where(Review.job_id.in_(job_ids)).order_by(Review.created_at, Review.id)):
        out[r.job_id] = r
    return out


def create_app(sessions: sessionmaker[Session], store_root: Any, scp_alive: Callable[[], bool], *,
               min_free_mb: int = 0, workers: Callable[[], tuple[int, int]] | None = None) -> FastAPI:
    app = FastAPI(title="LGE AI node", version=node.__version__,
                  description="Cardiac LGE AI node: health, metrics, jobs and series.")

    # Liveness and readiness (node/api/health.py): public, they report states, not data.
    app.include_router(health_router(HealthSources(sessions, Path(store_root), scp_alive, min_free_mb, workers)))

    @app.get("/metrics")
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

    @app.get("/api/jobs", response_model=list[JobOut])
    def jobs(state: str | None = None, study_uid: str | None = None, series_uid: str | None = None,
             limit: int = Query(100, le=1000)) -> list[JobOut]:
        with sessions() as s:
            q = select(Job).order_by(Job.id.desc()).limit(limit)
            if state:
                q = q.where(Job.state == state)
            if study_uid:
                q = q.where(Job.study_uid == study_uid)
            if series_uid:
                q = q.where(Job.series_uid == series_uid)
            return _with_review(s, list(s.scalars(q)))

    @app.get("/api/jobs/{job_id}", response_model=JobOut)
    def job(job_id: int) -> JobOut:
        with sessions() as s:
            j = s.get(Job, job_id)
            if j is None:
                raise HTTPException(404, f"no job {job_id}")
            return _with_review(s, [j])[0]

    @app.post("/api/jobs/{job_id}/review", response_model=ReviewOut, status_code=201)
    def review(job_id: int, body: ReviewIn) -> Review:
        """Record a radiologist's accept/reject decision (append-only history)."""
        with sessions.begin() as s:
            if s.get(Job, job_id) is None:
                raise HTTPException(404, f"no job {job_id}")
            r = Review(job_id=job_id, **body.model_dump())
            s.add(r)
            s.flush()
            s.refresh(r)
            s.expunge(r)
        metrics.REVIEWS.labels(body.decision).inc()
        return r

    @app.get("/api/jobs/{job_id}/reviews", response_model=list[ReviewOut])
    def reviews(job_id: int) -> list[Review]:
        with sessions() as s:
            if s.get(Job, job_id) is None:
                raise HTTPException(404, f"no job {job_id}")
            return list(s.scalars(select(Review).where(Review.job_id == job_id)
                                  .order_by(Review.created_at.desc(), Review.id.desc())))

    @app.get("/api/series", response_model=list[SeriesOut])
    def series(state: str | None = None, limit: int = Query(100, le=1000)) -> list[Series]:
        with sessions() as s:
            q = select(Series).order_by(Series.last_received_at.desc()).limit(limit)
            if state:
                q = q.where(Series.state == state)
            return list(s.scalars(q))

    return app
