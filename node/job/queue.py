"""The job queue, kept in the database so that it survives crashes and can be shared.

Claiming is a conditional UPDATE (state queued -> running) checked by row count, so two
workers — threads, processes or nodes on one PostgreSQL — never run the same job. A running
job holds a lease that its worker renews; a lease that runs out (the worker died) puts the job
back in the queue, and at startup a single-node (SQLite) install re-queues every running job
at once. A job is attempted at most ``max_attempts`` times.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from node.db.models import Job, JobState, utcnow


@dataclass(frozen=True)
class Claimed:
    id: int
    series_uid: str
    study_uid: str
    revision: int
    attempt: int
    kind: str = "segment"


class JobQueue:
    def __init__(self, sessions: sessionmaker[Session], *, lease_seconds: float = 120.0,
                 retry_backoff_seconds: float = 30.0) -> None:
        self.sessions = sessions
        self.lease = timedelta(seconds=lease_seconds)
        self.backoff = retry_backoff_seconds

    def claim(self, worker: str, now: datetime | None = None) -> Claimed | None:
        now = now or utcnow()
        with self.sessions() as session:
            candidates = session.scalars(
                select(Job.id).where(Job.state == JobState.QUEUED, Job.next_attempt_at <= now)
                .order_by(Job.next_attempt_at, Job.id).limit(5)
            ).all()
        for job_id in candidates:
            with self.sessions.begin() as session:
                res = session.execute(
                    update(Job).where(Job.id == job_id, Job.state == JobState.QUEUED)
                    .values(state=JobState.RUNNING, worker=worker, attempts=Job.attempts + 1,
                            started_at=now, lease_expires_at=now + self.lease, reason=None)
                )
                if res.rowcount == 1:
                    job = session.get(Job, job_id)
                    assert job is not None
                    return Claimed(job.id, job.series_uid, job.study_uid, job.revision, job.attempts, job.kind)
        return None

    def heartbeat(self, job_id: int, worker: str, stage: str | None = None) -> None:
        values: dict[str, object] = {"lease_expires_at": utcnow() + self.lease}
        if stage is not None:
            values["stage"] = stage
        with self.sessions.begin() as session:
            session.execute(update(Job).where(Job.id == job_id, Job.worker == worker,
                                              Job.state == JobState.RUNNING).values(**values))

    def finish(self, job_id: int, worker: str, result: dict[str, object]) -> bool:
        with self.sessions.begin() as session:
            res = session.execute(
                update(Job).where(Job.id == job_id, Job.worker == worker, Job.state == JobState.RUNNING)
                .values(state=JobState.DONE, finished_at=utcnow(), result=result, lease_expires_at=None, stage=None)
            )
            return res.rowcount == 1

    def fail(self, job_id: int, worker: str, reason: str, *, retryable: bool = True,
             partial: dict[str, object] | None = None) -> str:
        """Record a failure; re-queue with backoff while attempts remain. Returns the new state."""
        now = utcnow()
        with self.sessions.begin() as session:
            job = session.get(Job, job_id)
            if job is None or job.worker != worker or job.state != JobState.RUNNING:
                return job.state if job else "missing"
            if retryable and job.attempts < job.max_attempts:
                job.state = JobState.QUEUED
                job.next_attempt_at = now + timedelta(seconds=self.backoff * (2 ** (job.attempts - 1)))
            else:
                job.state = JobState.FAILED
                job.finished_at = now
            job.reason = reason[:2000]
            job.lease_expires_at = None
            if partial:
                job.result = dict(partial)  # what the stages before the failure found
            return job.state

    def requeue_expired(self, now: datetime | None = None) -> int:
        """Running jobs whose worker stopped renewing its lease go back to the queue."""
        now = now or utcnow()
        expired = or_(Job.lease_expires_at.is_(None), Job.lease_expires_at < now)
        return self._requeue(expired, now, "the worker stopped (crash or restart) before finishing")

    def _requeue(self, condition, now: datetime, why: str) -> int:  # type: ignore[no-untyped-def]
        # A job that keeps killing its worker must not loop for ever: it fails once its
        # attempts are used up.
        with self.sessions.begin() as session:
            session.execute(
                update(Job).where(Job.state == JobState.RUNNING, condition, Job.attempts >= Job.max_attempts)
                .values(state=JobState.FAILED, worker=None, finished_at=now, lease_expires_at=None,
                        reason=f"failed: {why}, and no attempts are left")
            )
            res = session.execute(
                update(Job).where(Job.state == JobState.RUNNING, condition)
                .values(state=JobState.QUEUED, worker=None, next_attempt_at=now, lease_expires_at=None,
                        reason=f"re-queued: {why}")
            )
            return int(res.rowcount or 0)

    def requeue_all_running(self) -> int:
        """At startup of a single-node install nothing else can be running these jobs."""
        return self._requeue(Job.state == JobState.RUNNING, utcnow(), "the node stopped while the job was running")

    def depth(self) -> int:
        with self.sessions() as session:
            return int(session.scalar(select(func.count()).select_from(Job).where(Job.state == JobState.QUEUED)) or 0)
