"""Series bookkeeping done in the same transaction as an instance's index row.

Late-instance policy (config ``series.late_instance_policy``), for a NEW instance (a SOP
Instance UID not stored before) arriving after its series was completed:
- ``reprocess`` (default): the series is re-opened (state back to ``receiving``, ``revision``
  + 1). When it completes again it is re-evaluated and, if selected, a new job for the new
  revision is queued; a queued job of the old revision is marked ``superseded``.
  A running or finished job of the old revision is kept (its results stay valid for the
  instances it saw).
- ``store_only``: the instance is stored and indexed; the series keeps its state and nothing
  is re-run.
A duplicate (same SOP Instance UID) never changes anything.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import update
from sqlalchemy.orm import Session

from node.db.models import Job, JobState, Series, SeriesState
from node.receive.contexts import IMAGE_SOP_CLASSES
from node.receive.header import InstanceHeader


SEG_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.66.4"


def record_instance(session: Session, header: InstanceHeader, now: datetime, late_policy: str,
                    produced: bool = False) -> None:
    """``produced``: the node's own result object (never evaluated); otherwise a received one.
    Received image series and received SEGs (possibly a radiologist's edit) are swept; other
    derived objects (SR, PDF, ...) are stored and left alone."""
    series = session.get(Series, header.series_uid)
    attrs = header.attrs
    swept = not produced and (header.sop_class_uid in IMAGE_SOP_CLASSES or header.sop_class_uid == SEG_SOP_CLASS)
    if series is None:
        series = Series(
            series_uid=header.series_uid,
            study_uid=header.study_uid,
            modality=_s(attrs.get("Modality"), 16),
            series_description=_s(attrs.get("SeriesDescription"), 128),
            series_number=_int(attrs.get("SeriesNumber")),
            state=SeriesState.RECEIVING if swept else SeriesState.RESULT,
            revision=1,
            n_instances=1,
            first_received_at=now,
            last_received_at=now,
        )
        if series.state == SeriesState.RESULT:
            series.reason = ("result written by this node" if produced
                             else "derived object (SR/PDF/SC): stored, not processed")
        session.add(series)
        return
    series.n_instances += 1
    series.last_received_at = now
    if series.state in (SeriesState.SELECTED, SeriesState.IGNORED) and late_policy == "reprocess":
        series.state = SeriesState.RECEIVING
        series.revision += 1
        series.reason = f"re-opened by a late instance (revision {series.revision})"
        series.completed_at = None
        session.execute(
            update(Job)
            .where(Job.series_uid == series.series_uid, Job.state == JobState.QUEUED)
            .values(state=JobState.SUPERSEDED, reason="a late instance re-opened the series")
        )


def _s(v: object, n: int) -> str | None:
    return None if v is None else str(v)[:n]


def _int(v: object) -> int | None:
    try:
        return int(str(v)) if v not in (None, "") else None
    except ValueError:
        return None
