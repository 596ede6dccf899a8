from __future__ import annotations

import threading
from datetime import timedelta

from sqlalchemy import select

from node.db.models import Job, Series, utcnow
from node.job.queue import JobQueue


def add_jobs(core, n: int, max_attempts: int = 3) -> list[int]:  # type: ignore[no-untyped-def]
    with core.sessions.begin() as s:
        for i in range(n):
            s.add(Series(series_uid=f"1.2.3.{i + 1}", study_uid="1.2.3", state="selected"))
            s.flush()  # the series row must exist before its job (foreign key)
            s.add(Job(series_uid=f"1.2.3.{i + 1}", study_uid="1.2.3", max_attempts=max_attempts,
                      next_attempt_at=utcnow() - timedelta(seconds=1)))
    with core.sessions() as s:
        return list(s.scalars(select(Job.id)))


def test_concurrent_claims_never_share_a_job(core) -> None:
    add_jobs(core, 40)
    q = JobQueue(core.sessions)
    got: dict[str, list[int]] = {}

    def run(name: str) -> None:
        mine = got.setdefault(name, [])
        while (c := q.claim(name)) is not None:
            mine.append(c.id)
            q.finish(c.id, name, {})

    threads = [threading.Thread(target=run, args=(f"w{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    claimed = [j for v in got.values() for j in v]
    assert sorted(claimed) == sorted(set(claimed)) and len(claimed) == 40
    with core.sessions() as s:
        assert set(s.scalars(select(Job.state))) == {"done"}


def test_retry_with_backoff_then_failed_with_reason(core) -> None:
    [job_id] = add_jobs(core, 1, max_attempts=2)
    q = JobQueue(core.sessions, retry_backoff_seconds=60)
    c = q.claim("w")
    assert c is not None and c.attempt == 1
    assert q.fail(c.id, "w", "load: disk error") == "queued"
    assert q.claim("w") is None  # backing off
    c = q.claim("w", now=utcnow() + timedelta(seconds=61))
    assert c is not None and c.attempt == 2
    assert q.fail(c.id, "w", "load: disk error") == "failed"
    with core.sessions() as s:
        job = s.get(Job, job_id)
        assert job.state == "failed" and job.reason == "load: disk error" and job.attempts == 2


def test_permanent_failure_not_retried(core) -> None:
    add_jobs(core, 1)
    q = JobQueue(core.sessions)
    c = q.claim("w")
    assert q.fail(c.id, "w", "bad geometry", retryable=False) == "failed"


def test_expired_lease_requeued_and_stale_worker_cannot_finish(core) -> None:
    add_jobs(core, 1)
    q = JobQueue(core.sessions, lease_seconds=10)
    c = q.claim("dead-worker")
    assert q.requeue_expired(now=utcnow()) == 0  # lease still valid
    assert q.requeue_expired(now=utcnow() + timedelta(seconds=11)) == 1
    c2 = q.claim("live-worker", now=utcnow() + timedelta(seconds=12))
    assert c2 is not None and c2.id == c.id and c2.attempt == 2
    assert not q.finish(c.id, "dead-worker", {"x": 1})  # the dead worker lost the job
    assert q.finish(c.id, "live-worker", {"x": 2})


def test_crash_loop_job_fails_after_max_attempts(core) -> None:
    add_jobs(core, 1, max_attempts=1)
    q = JobQueue(core.sessions)
    q.claim("w")
    q.requeue_all_running()
    with core.sessions() as s:
        job = s.scalar(select(Job))
        assert job.state == "failed" and "no attempts are left" in job.reason
