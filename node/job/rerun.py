"""Operator actions once the cause of a failure is fixed: run a failed job again, send its failed
deliveries again.

A job fails for good after ``max_attempts`` (or at once for a permanent error: an unusable
series, a model missing); a delivery fails for good after ``attempts`` tries (a destination down
all weekend). Once the administrator has fixed the cause, the work must not be lost or redone by
hand: ``rerun_job`` puts a failed job back in the queue with fresh attempts; ``resend_deliveries``
puts its failed deliveries back in the outbox, the same stored objects with the same UIDs. The
previous failure stays in the reason ("re-run by ... after: ...") and the caller audits who did
it (API: the authenticated identity; CLI: ``cli:<login>``).
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from node.db.models import Delivery, DeliveryState, Job, JobKind, JobState, Series, utcnow


class NotRerunnable(ValueError):
    """The job or its deliveries are not in a state that can be run again (the message says why)."""


def _job(session: Session, job_id: int) -> Job:
    job = session.get(Job, job_id)
    if job is None:
        raise LookupError(f"no job {job_id}")
    return job


def rerun_job(session: Session, job_id: int, by: str) -> Job:
    """Re-queue failed job ``job_id`` with fresh attempts; raises LookupError or NotRerunnable."""
    job = _job(session, job_id)
    if job.state != JobState.FAILED:
        raise NotRerunnable(f"job {job_id} is {job.state}: only a failed job is run again")
    if job.kind == JobKind.SEGMENT:
        series = session.get(Series, job.series_uid)
        if series is not None and series.revision != job.revision:
            raise NotRerunnable(f"job {job_id} is for revision {job.revision} of its series, which is now at "
                                f"revision {series.revision}: that revision's job replaces it")
    job.reason = f"re-run by {by} after: {job.reason or 'no reason recorded'}"[:2000]
    job.state = JobState.QUEUED
    job.attempts = 0
    job.next_attempt_at = utcnow()
    job.finished_at = None
    job.stage = None
    job.worker = None
    job.lease_expires_at = None
    return job


def resend_deliveries(session: Session, job_id: int | None, by: str, destination: str | None = None) -> list[Delivery]:
    """Put job ``job_id``'s failed deliveries (every job's with None: after a destination's long
    outage; to ``destination`` only, if given) back in the outbox with fresh attempts; raises
    LookupError or NotRerunnable when there are none."""
    q = select(Delivery).where(Delivery.state == DeliveryState.FAILED)
    if job_id is not None:
        _job(session, job_id)
        q = q.where(Delivery.job_id == job_id)
    if destination is not None:
        q = q.where(Delivery.destination == destination)
    rows = list(session.scalars(q.order_by(Delivery.id)))
    if not rows:
        raise NotRerunnable((f"job {job_id} has" if job_id is not None else "there are")
                            + " no failed deliveries" + (f" to {destination!r}" if destination else ""))
    now = utcnow()
    for d in rows:
        d.last_error = f"re-sent by {by} after: {d.last_error or 'no error recorded'}"[:2000]
        d.state = DeliveryState.PENDING
        d.attempts = 0
        d.next_attempt_at = now
    return rows
