"""The sweep that declares series complete and applies the LGE rules.

A series is complete when no instance arrived for ``series.idle_seconds`` (and no inference
request is still retrieving it). Each complete
series is either SELECTED (one job is queued for its current revision) or IGNORED with the
reason. Safe to run concurrently on several nodes sharing one database: the state change is
a conditional UPDATE, so only one sweeper wins a series, and the job's unique
(series, revision) key makes the queueing idempotent.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from node import metrics
from node.config import NodeConfig
from node.db.models import InferenceRequest, Instance, Job, JobKind, RequestState, Series, SeriesState, utcnow
from node.infer.reviewed_seg import SEG_SOP_CLASS, classify_stored
from node.series.selection import Verdict, evaluate

log = logging.getLogger(__name__)


def sweep(sessions: sessionmaker[Session], cfg: NodeConfig, now: datetime | None = None) -> list[str]:
    """Complete every idle series; return the UIDs of series that got a job."""
    now = now or utcnow()
    cutoff = now - timedelta(seconds=cfg.series.idle_seconds)
    with sessions() as session:
        idle = session.execute(
            select(Series.series_uid, Series.revision, Series.last_received_at)
            .where(Series.state == SeriesState.RECEIVING, Series.last_received_at <= cutoff)
        ).all()
    held = being_retrieved(sessions) if idle else set()
    queued: list[str] = []
    for uid, revision, last in idle:
        if uid in held:
            continue  # an inference request is still retrieving it (e.g. waiting to retry its source)
        if _complete_one(sessions, cfg, uid, revision, last, now):
            queued.append(uid)
    return queued


def being_retrieved(sessions: sessionmaker[Session]) -> set[str]:
    """Series that an inference request has listed and is still retrieving: not complete yet,
    however long the source takes (node/retrieve/dicomweb.py)."""
    with sessions() as session:
        lists = session.scalars(select(InferenceRequest.found_series).where(
            InferenceRequest.state.in_(RequestState.RETRIEVAL), InferenceRequest.found_series.is_not(None)))
        return {uid for uids in lists for uid in (uids or [])}


def _seg_readable_here(session: Session, cfg: NodeConfig, uid: str) -> bool:
    """Whether this node can read a SEG series' file: always without a cluster; in a cluster,
    when the file is here or no other node is named as holding it."""
    if cfg.node_name is None:
        return True
    for path, owner in session.execute(select(Instance.path, Instance.node).where(Instance.series_uid == uid)):
        if owner not in (None, cfg.node_name) and not (cfg.storage_root / path).exists():
            return False
    return True


def _complete_one(sessions: sessionmaker[Session], cfg: NodeConfig, uid: str, revision: int,
                  last: datetime, now: datetime) -> bool:
    kind = JobKind.SEGMENT
    with sessions.begin() as session:
        rows = session.execute(select(Instance.sop_class_uid, Instance.attrs).where(Instance.series_uid == uid)).all()
        if rows and all(c == SEG_SOP_CLASS for c, _ in rows):
            if not _seg_readable_here(session, cfg, uid):
                return False  # another node holds the SEG (no shared storage): its own sweep completes it
            seg_verdict, _ = classify_stored(session, cfg.storage_root, uid)
            verdict, kind = Verdict(seg_verdict.reviewed, seg_verdict.reason), JobKind.REMEASURE
        else:
            verdict = evaluate(cfg.selection, [(c, a or {}) for c, a in rows])
        state = SeriesState.SELECTED if verdict.selected else SeriesState.IGNORED
        # Conditional on nothing having arrived since we looked: a late instance wins.
        res = session.execute(
            update(Series)
            .where(Series.series_uid == uid, Series.state == SeriesState.RECEIVING,
                   Series.revision == revision, Series.last_received_at == last)
            .values(state=state, reason=verdict.reason, completed_at=now)
        )
        if res.rowcount != 1:
            return False
        metrics.SERIES_COMPLETED.labels(state).inc()
        log.info("series complete", extra={"series_uid": uid, "revision": revision, "decision": state,
                                           "reason": verdict.reason, "instances": len(rows)})
        if not verdict.selected:
            return False
        study_uid = session.execute(select(Series.study_uid).where(Series.series_uid == uid)).scalar_one()
        try:
            with session.begin_nested():
                session.add(Job(series_uid=uid, study_uid=study_uid, revision=revision, kind=kind,
                                max_attempts=cfg.jobs.max_attempts, next_attempt_at=utcnow(), created_at=utcnow()))
        except IntegrityError:
            return False  # another node queued it
    metrics.JOBS.labels("queued").inc()
    return True

