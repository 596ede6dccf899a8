from __future__ import annotations

from datetime import timedelta

from sqlalchemy import func, select

from node.db.models import Instance, Job, Series, utcnow
from node.store.retention import purge_expired


def _series(core, uid: str, age_days: float, job_state: str | None) -> str:  # type: ignore[no-untyped-def]
    rel = core.files.relpath_for("1.2", uid, uid + ".1")
    core.files.write(rel, b"x")
    with core.sessions.begin() as s:
        s.add(Series(series_uid=uid, study_uid="1.2", state="selected",
                     last_received_at=utcnow() - timedelta(days=age_days)))
        s.flush()
        s.add(Instance(sop_instance_uid=uid + ".1", sop_class_uid="1.2.840.10008.5.1.4.1.1.4", study_uid="1.2",
                       series_uid=uid, transfer_syntax_uid="1.2.840.10008.1.2.1", path=rel, size_bytes=1, attrs={}))
        if job_state:
            s.add(Job(series_uid=uid, study_uid="1.2", state=job_state, next_attempt_at=utcnow()))
    return rel


def test_purge_only_old_finished_series(core) -> None:
    old_done = _series(core, "1.2.1", 40, "done")
    old_busy = _series(core, "1.2.2", 40, "queued")
    new_done = _series(core, "1.2.3", 1, "done")
    assert purge_expired(core.sessions, core.files, 0) == 0  # 0 = keep for ever
    assert purge_expired(core.sessions, core.files, 30) == 1
    root = core.files.root
    assert not (root / old_done).exists() and (root / old_busy).exists() and (root / new_done).exists()
    with core.sessions() as s:
        assert s.scalar(select(func.count()).select_from(Instance)) == 2
        assert s.scalar(select(func.count()).select_from(Series)) == 3  # history kept


def test_cluster_node_purges_its_own_rows_and_every_local_copy(core) -> None:  # type: ignore[no-untyped-def]
    """Without shared storage: node A deletes its rows and files, and its fetched copies of node B's
    files (a cache), even those whose rows B already purged; B's rows stay for B to clean."""
    core.files.node_name = "node-a"
    own = _series(core, "1.2.7", 40, "done")
    rel_b = core.files.relpath_for("1.2", "1.2.7", "1.2.7.2")
    rel_orphan = core.files.relpath_for("1.2", "1.2.7", "1.2.7.3")
    core.files.write(rel_b, b"y")  # a copy fetched from node B, B's row still there
    core.files.write(rel_orphan, b"z")  # a copy whose row B has purged already
    with core.sessions.begin() as s:
        s.get(Instance, "1.2.7.1").node = "node-a"
        s.add(Instance(sop_instance_uid="1.2.7.2", sop_class_uid="1.2.840.10008.5.1.4.1.1.4", study_uid="1.2",
                       series_uid="1.2.7", transfer_syntax_uid="1.2.840.10008.1.2.1", path=rel_b, size_bytes=1,
                       attrs={}, node="node-b"))
    assert purge_expired(core.sessions, core.files, 30) == 3
    root = core.files.root
    assert not (root / own).exists() and not (root / rel_b).exists() and not (root / rel_orphan).exists()
    assert not (root / "1.2" / "1.2.7").exists()  # the emptied series folder went too
    with core.sessions() as s:
        assert {i.sop_instance_uid: i.node for i in s.scalars(select(Instance))} == {"1.2.7.2": "node-b"}
    # The folder can be written again (a late instance, a new fetch).
    assert core.files.write(own, b"x").created
