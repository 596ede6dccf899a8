"""Clean-up (APScheduler job): delete stored instances of finished series after
``storage.retention_days``. A series with a queued or running job is never touched; the
series and job rows stay (the history of what was done), only the instance files and their
index rows go."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from sqlalchemy import delete, exists, select
from sqlalchemy.orm import Session, sessionmaker

from node.db.models import Instance, Job, JobState, Series, SeriesState, utcnow
from node.store.files import FileStore

log = logging.getLogger(__name__)


def purge_expired(sessions: sessionmaker[Session], files: FileStore, retention_days: int,
                  now: datetime | None = None) -> int:
    if retention_days <= 0:
        return 0
    cutoff = (now or utcnow()) - timedelta(days=retention_days)
    busy = exists().where(Job.series_uid == Series.series_uid, Job.state.in_([JobState.QUEUED, JobState.RUNNING]))
    with sessions() as s:
        uids = list(s.scalars(
            select(Series.series_uid).where(Series.last_received_at < cutoff, Series.state != SeriesState.RECEIVING,
                                            ~busy)
        ))
    removed = 0
    for uid in uids:
        with sessions.begin() as s:
            paths = list(s.scalars(select(Instance.path).where(Instance.series_uid == uid)))
            s.execute(delete(Instance).where(Instance.series_uid == uid))
        # Index rows first: a crash here leaves files that reconcile() would re-index, never
        # index rows pointing at missing files.
        for p in paths:
            files.remove(p)
        removed += len(paths)
    if removed:
        log.info("retention: removed expired instances", extra={"count": removed, "series": len(uids)})
    return removed
