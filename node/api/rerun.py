"""After a failure is fixed: a job's deliveries, a failed job run again, failed deliveries sent again.

``GET /api/jobs/{id}/deliveries`` (role ``read``) lists each result object's delivery to each
destination with its state, attempts and last error. Role ``admin`` (`node.api.auth.required_role`):
``POST /api/jobs/{id}/rerun`` puts a failed job back in the queue; ``POST
/api/jobs/{id}/deliveries/rerun`` its failed deliveries back in the outbox, ``POST
/api/deliveries/rerun`` every job's (after a destination's long outage) (`node.job.rerun`). Who did
it is the authenticated identity, recorded in the reason and the audit trail.
"""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, HTTPException, Query, Request
from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from node.api.lookup import get_or_404
from node.api.openapi import SEG_UID, TIME, VALIDATION_422, errors, json_example
from node.db.models import Delivery, Job
from node.job.rerun import NotRerunnable, rerun_job, resend_deliveries
from node.security import audit as A


class DeliveryOut(BaseModel):
    # Nullable fields default to None for the OpenAPI document only (see node/api/app.py ReviewOut).
    id: int
    job_id: int
    destination: str
    kind: str
    sop_instance_uid: str
    state: str
    attempts: int
    last_error: str | None = None
    next_attempt_at: datetime
    delivered_at: datetime | None = None


class RerunOut(BaseModel):
    job_id: int
    state: str
    reason: str | None = None
    deliveries: list[DeliveryOut] = []


class RerunAllOut(BaseModel):
    count: int
    job_ids: list[int]
    deliveries: list[DeliveryOut]


DELIVERY_EXAMPLE = {"id": 31, "job_id": 7, "destination": "pacs", "kind": "seg", "sop_instance_uid": SEG_UID,
                    "state": "failed", "attempts": 5,
                    "last_error": "association rejected by 127.0.0.1:4242 (AE PACS): called AE title not recognised",
                    "next_attempt_at": TIME, "delivered_at": None}
_CONFLICT = {"e409": {"detail": "job 7 is done: only a failed job is run again"}}
_NOT_FOUND = {"e404": {"detail": "no job 7"}}


def rerun_router(sessions: sessionmaker[Session]) -> APIRouter:
    router = APIRouter(tags=["jobs"])

    def audited(request: Request, j: Job, **detail: object) -> None:
        request.state.audit_objects = [A.job(j.id, study_uid=j.study_uid, series_uid=j.series_uid, **detail)]

    @router.get("/api/jobs/{job_id}/deliveries", response_model=list[DeliveryOut], summary="A job's deliveries",
                description="Each result object (SEG, SR, PDF) to each destination: pending, delivered or failed "
                            "(attempts used up), with the attempts and the last error. Role `read`.",
                responses={200: json_example([DELIVERY_EXAMPLE]), 422: {"description": VALIDATION_422},
                           **errors(404, **_NOT_FOUND)})
    def deliveries(job_id: int, request: Request) -> list[Delivery]:
        with sessions() as s:
            audited(request, get_or_404(s, Job, job_id, "job"))
            return list(s.scalars(select(Delivery).where(Delivery.job_id == job_id).order_by(Delivery.id)))

    @router.post("/api/jobs/{job_id}/rerun", response_model=RerunOut, summary="Run a failed job again",
                 description="Put a failed job back in the queue with fresh attempts, once its cause is fixed "
                             "(a series re-sent, a model installed). Its reason keeps the earlier failure, with "
                             "who re-ran it (the authenticated identity). 409 for a job that is not failed, or "
                             "whose series has a newer revision. Role `admin`.",
                 responses={200: json_example({"job_id": 7, "state": "queued", "deliveries": [],
                                               "reason": "re-run by it-admin after: load: no image files"}),
                            422: {"description": VALIDATION_422}, **errors(404, 409, **_NOT_FOUND, **_CONFLICT)})
    def rerun(job_id: int, request: Request) -> RerunOut:
        with sessions.begin() as s:
            j = get_or_404(s, Job, job_id, "job")
            audited(request, j, action="rerun")
            try:
                j = rerun_job(s, job_id, request.state.principal.name)
            except NotRerunnable as exc:
                raise HTTPException(409, str(exc)) from None
            return RerunOut(job_id=j.id, state=j.state, reason=j.reason)

    @router.post("/api/jobs/{job_id}/deliveries/rerun", response_model=RerunOut,
                 summary="Send a job's failed deliveries again",
                 description="Put the job's failed deliveries (only those to `destination`, if given) back in "
                             "the outbox with fresh attempts: the same stored objects, the same UIDs. Use it once "
                             "the destination is back or its settings are fixed. 409 when there is no failed "
                             "delivery. Role `admin`.",
                 responses={200: json_example({"job_id": 7, "state": "done", "reason": None, "deliveries": [
                                {**DELIVERY_EXAMPLE, "state": "pending", "attempts": 0,
                                 "last_error": "re-sent by it-admin after: association rejected ..."}]}),
                            422: {"description": VALIDATION_422},
                            **errors(404, 409, **_NOT_FOUND,
                                     e409={"detail": "job 7 has no failed deliveries to 'pacs'"})})
    def resend(job_id: int, request: Request,
               destination: str | None = Query(None, description="Only deliveries to this destination")) -> RerunOut:
        with sessions.begin() as s:
            j = get_or_404(s, Job, job_id, "job")
            audited(request, j, action="resend", destination=destination)
            try:
                rows = resend_deliveries(s, job_id, request.state.principal.name, destination)
            except NotRerunnable as exc:
                raise HTTPException(409, str(exc)) from None
            return RerunOut(job_id=j.id, state=j.state, reason=j.reason,
                            deliveries=[DeliveryOut.model_validate(d, from_attributes=True) for d in rows])

    @router.post("/api/deliveries/rerun", response_model=RerunAllOut,
                 summary="Send every failed delivery again",
                 description="After a destination's long outage: put every job's failed deliveries (only those to "
                             "`destination`, if given) back in the outbox with fresh attempts, the same stored "
                             "objects and UIDs. 409 when there is none. Role `admin`.",
                 responses={200: json_example({"count": 3, "job_ids": [7, 8], "deliveries": [
                                {**DELIVERY_EXAMPLE, "state": "pending", "attempts": 0,
                                 "last_error": "re-sent by it-admin after: association rejected ..."}]}),
                            422: {"description": VALIDATION_422},
                            **errors(409, e409={"detail": "there are no failed deliveries to 'pacs'"})})
    def resend_all(request: Request,
                   destination: str | None = Query(None, description="Only deliveries to this destination")
                   ) -> RerunAllOut:
        with sessions.begin() as s:
            try:
                rows = resend_deliveries(s, None, request.state.principal.name, destination)
            except NotRerunnable as exc:
                raise HTTPException(409, str(exc)) from None
            job_ids = sorted({d.job_id for d in rows})
            jobs = {j.id: j for j in s.scalars(select(Job).where(Job.id.in_(job_ids)))}
            request.state.audit_objects = [A.job(jid, study_uid=jobs[jid].study_uid, series_uid=jobs[jid].series_uid,
                                                 action="resend", destination=destination) for jid in job_ids]
            return RerunAllOut(count=len(rows), job_ids=job_ids,
                               deliveries=[DeliveryOut.model_validate(d, from_attributes=True) for d in rows])

    return router
