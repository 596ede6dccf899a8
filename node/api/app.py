"""FastAPI application: /health, /metrics, /api/jobs, /api/series."""

from __future__ import annotations

import shutil
from datetime import datetime
from typing import Any, Callable

from fastapi import FastAPI, HTTPException, Query, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel
from sqlalchemy import select, text
from sqlalchemy.orm import Session, sessionmaker

import node
from node import metrics
from node.db.models import Job, Series


class JobOut(BaseModel):
    id: int
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


def create_app(sessions: sessionmaker[Session], store_root: Any, scp_alive: Callable[[], bool]) -> FastAPI:
    app = FastAPI(title="LGE AI node", version=node.__version__,
                  description="Cardiac LGE AI node: health, metrics, jobs and series.")

    @app.get("/health")
    def health(response: Response) -> dict[str, Any]:
        checks: dict[str, Any] = {}
        try:
            with sessions() as s:
                s.execute(text("SELECT 1"))
            checks["database"] = "ok"
        except Exception as exc:  # pragma: no cover - reported, not raised
            checks["database"] = f"error: {type(exc).__name__}"
        checks["dicom_scp"] = "ok" if scp_alive() else "down"
        free = shutil.disk_usage(store_root).free
        metrics.FREE_BYTES.set(free)
        checks["storage_free_bytes"] = free
        ok = checks["database"] == "ok" and checks["dicom_scp"] == "ok"
        response.status_code = 200 if ok else 503
        return {"status": "ok" if ok else "degraded", "version": node.__version__, "checks": checks}

    @app.get("/metrics")
    def prometheus() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    @app.get("/api/jobs", response_model=list[JobOut])
    def jobs(state: str | None = None, limit: int = Query(100, le=1000)) -> list[Job]:
        with sessions() as s:
            q = select(Job).order_by(Job.id.desc()).limit(limit)
            if state:
                q = q.where(Job.state == state)
            return list(s.scalars(q))

    @app.get("/api/jobs/{job_id}", response_model=JobOut)
    def job(job_id: int) -> Job:
        with sessions() as s:
            j = s.get(Job, job_id)
            if j is None:
                raise HTTPException(404, f"no job {job_id}")
            return j

    @app.get("/api/series", response_model=list[SeriesOut])
    def series(state: str | None = None, limit: int = Query(100, le=1000)) -> list[Series]:
        with sessions() as s:
            q = select(Series).order_by(Series.last_received_at.desc()).limit(limit)
            if state:
                q = q.where(Series.state == state)
            return list(s.scalars(q))

    return app
