"""node/job/rerun.py: a failed job back in the queue, failed deliveries back in the outbox, with
fresh attempts and the earlier failure kept; nothing else can be re-run."""

from __future__ import annotations

import pytest

from node.db.models import Delivery, DeliveryState, Job, JobState, Series, utcnow
from node.job.queue import JobQueue
from node.job.rerun import NotRerunnable, rerun_job, resend_deliveries


def _job(core, state: str = JobState.FAILED, revision: int = 1, series_revision: int = 1) -> int:  # type: ignore[no-untyped-def]
    with core.sessions.begin() as s:
        s.add(Series(series_uid="1.2.3.5", study_uid="1.2.3", state="selected", revision=series_revision))
        s.flush()
        j = Job(series_uid="1.2.3.5", study_uid="1.2.3", revision=revision, state=state, attempts=3,
                reason="load: no image files", finished_at=utcnow(), next_attempt_at=utcnow())
        s.add(j)
        s.flush()
        for dest, st in (("pacs", DeliveryState.FAILED), ("archive", DeliveryState.FAILED),
                         ("viewer", DeliveryState.DELIVERED)):
            s.add(Delivery(job_id=j.id, destination=dest, kind="seg", sop_instance_uid=f"1.2.9.{dest.__len__()}",
                           sop_class_uid="1.2.840.10008.5.1.4.1.1.66.4", path="x/y/z.dcm", state=st,
                           attempts=5, last_error="association rejected" if st == DeliveryState.FAILED else None,
                           next_attempt_at=utcnow()))
        return int(j.id)


def test_failed_job_is_queued_again_and_claimed(core) -> None:  # type: ignore[no-untyped-def]
    jid = _job(core)
    with core.sessions.begin() as s:
        j = rerun_job(s, jid, "it-admin")
        assert j.state == JobState.QUEUED and j.attempts == 0 and j.finished_at is None
        assert j.reason == "re-run by it-admin after: load: no image files"
    claimed = JobQueue(core.sessions).claim("w1")
    assert claimed is not None and claimed.id == jid and claimed.attempt == 1


@pytest.mark.parametrize("state", [JobState.DONE, JobState.QUEUED, JobState.RUNNING, JobState.SUPERSEDED])
def test_only_failed_jobs_run_again(core, state: str) -> None:  # type: ignore[no-untyped-def]
    jid = _job(core, state=state)
    with core.sessions.begin() as s, pytest.raises(NotRerunnable, match=f"is {state}: only a failed job"):
        rerun_job(s, jid, "it-admin")


def test_a_job_of_an_older_series_revision_is_not_run_again(core) -> None:  # type: ignore[no-untyped-def]
    jid = _job(core, revision=1, series_revision=2)
    with core.sessions.begin() as s, pytest.raises(NotRerunnable, match="now at revision 2"):
        rerun_job(s, jid, "it-admin")


def test_failed_deliveries_back_in_the_outbox_delivered_ones_untouched(core) -> None:  # type: ignore[no-untyped-def]
    jid = _job(core)
    with core.sessions.begin() as s:
        rows = resend_deliveries(s, jid, "it-admin", destination="pacs")
        assert [d.destination for d in rows] == ["pacs"]
    with core.sessions() as s:
        by_dest = {d.destination: d for d in s.query(Delivery).filter_by(job_id=jid)}
    assert by_dest["pacs"].state == DeliveryState.PENDING and by_dest["pacs"].attempts == 0
    assert by_dest["pacs"].last_error == "re-sent by it-admin after: association rejected"
    assert by_dest["archive"].state == DeliveryState.FAILED  # another destination, not asked for
    assert by_dest["viewer"].state == DeliveryState.DELIVERED
    with core.sessions.begin() as s:
        assert [d.destination for d in resend_deliveries(s, jid, "it-admin")] == ["archive"]
    with core.sessions.begin() as s, pytest.raises(NotRerunnable, match="no failed deliveries"):
        resend_deliveries(s, jid, "it-admin")


def test_every_jobs_failed_deliveries_after_an_outage(core) -> None:  # type: ignore[no-untyped-def]
    first = _job(core)
    with core.sessions.begin() as s:  # a second job of another series, its PACS delivery failed too
        s.add(Series(series_uid="1.2.3.6", study_uid="1.2.3", state="selected"))
        s.flush()
        j = Job(series_uid="1.2.3.6", study_uid="1.2.3", state=JobState.DONE, next_attempt_at=utcnow())
        s.add(j)
        s.flush()
        s.add(Delivery(job_id=j.id, destination="pacs", kind="sr", sop_instance_uid="1.2.9.77",
                       sop_class_uid="1.2.840.10008.5.1.4.1.1.88.34", path="a/b/c.dcm", state=DeliveryState.FAILED,
                       attempts=5, last_error="timeout", next_attempt_at=utcnow()))
        second = j.id
    with core.sessions.begin() as s:
        rows = resend_deliveries(s, None, "it-admin", destination="pacs")
        assert sorted((d.job_id, d.destination) for d in rows) == [(first, "pacs"), (second, "pacs")]
    with core.sessions.begin() as s, pytest.raises(NotRerunnable, match="there are no failed deliveries to 'pacs'"):
        resend_deliveries(s, None, "it-admin", destination="pacs")


def test_unknown_job(core) -> None:  # type: ignore[no-untyped-def]
    with core.sessions.begin() as s:
        with pytest.raises(LookupError, match="no job 999"):
            rerun_job(s, 999, "x")
        with pytest.raises(LookupError, match="no job 999"):
            resend_deliveries(s, 999, "x")
