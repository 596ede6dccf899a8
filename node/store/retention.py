"""Clean-up (APScheduler job): delete stored instances of finished series after
``storage.retention_days``. A series with a queued or running job is never touched; the
series and job rows stay (the history of what was done), only the instance files and their
index rows go.

In a cluster without shared storage (``cluster.enabled``) each node cleans its own disk: it
deletes the index rows of the files it holds (its own, and rows from before the cluster), and
every local copy of the series' files, including copies fetched from other nodes (a cache);
other nodes' rows stay for their owners to clean, so their files never become unreachable."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from sqlalchemy import delete, exists, or_, select
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
        mine = Instance.series_uid == uid
        if files.node_name is not None:
            mine = mine & or_(Instance.node == files.node_name, Instance.node.is_(None))
        with sessions.begin() as s:
            paths = list(s.scalars(select(Instance.path).where(mine)))
            cached = [] if files.node_name is None else list(s.scalars(
                select(Instance.path).where(Instance.series_uid == uid, ~mine)))
            study = s.scalar(select(Series.study_uid).where(Series.series_uid == uid))
            s.execute(delete(Instance).where(mine))
        # Index rows first: a crash here leaves files that reconcile() would re-index, never
        # index rows pointing at missing files.
        for p in paths:
            files.remove(p)
        removed += len(paths)
        if files.node_name is not None and study is not None:
            # Fetched copies: those still indexed by their owner, and those whose rows the owner
            # has already purged (left in the series' folder).
            removed += sum(files.remove_if_present(p) for p in cached)
            removed += files.remove_series_folder(study, uid)
    if removed:
        log.info("retention: removed expired instances", extra={"count": removed, "series": len(uids)})
    return removed
