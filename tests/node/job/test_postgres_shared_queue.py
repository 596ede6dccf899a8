"""Several workers and two nodes sharing one PostgreSQL queue: each job runs exactly once."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from sqlalchemy import Engine, MetaData, inspect, select

from node.db.models import Instance, Job, Series, utcnow
from node.db.session import make_engine, session_factory, upgrade
from node.job.queue import JobQueue
from node.series.completion import sweep
from tests.support.postgres import postgres_url  # noqa: F401  (fixture)

pytestmark = pytest.mark.postgres


def drop_everything(engine: Engine) -> None:
    """Drop every table of the database (the node's, Alembic's and any leftover), so a run against a
    reused server (LGENODE_TEST_PG_URL) starts from an empty schema and leaves one behind."""
    meta = MetaData()
    meta.reflect(engine)
    meta.drop_all(engine)
    assert inspect(engine).get_table_names() == []


@pytest.fixture
def pg_sessions(postgres_url: str):  # type: ignore[no-untyped-def]  # noqa: F811
    engine = make_engine(postgres_url)
    drop_everything(engine)
    upgrade(engine)  # Alembic migrations run on PostgreSQL too
    upgrade(engine)  # and are idempotent
    try:
        yield session_factory(engine)
    finally:
        drop_everything(engine)
        engine.dispose()


def test_two_nodes_eight_workers_each_job_once(pg_sessions, postgres_url: str, node_config) -> None:  # noqa: F811
    cfg = node_config()
    # 30 complete LGE series from "two nodes" that both sweep.
    with pg_sessions.begin() as s:
        for i in range(30):
            uid = f"1.2.826.0.9.{i + 1}"
            s.add(Series(series_uid=uid, study_uid="1.2.826.0.9", state="receiving",
                         last_received_at=utcnow() - timedelta(seconds=60), series_description="LGE PSIR"))
            for k in range(4):
                s.add(Instance(sop_instance_uid=f"{uid}.{k + 1}", sop_class_uid="1.2.840.10008.5.1.4.1.1.4",
                               study_uid="1.2.826.0.9", series_uid=uid, transfer_syntax_uid="1.2.840.10008.1.2.1",
                               path="x", size_bytes=1, attrs={
                                   "Modality": "MR", "SeriesDescription": "LGE PSIR", "Rows": 8, "Columns": 8,
                                   "PixelSpacing": ["1", "1"], "ImageOrientationPatient": ["1", "0", "0", "0", "1", "0"],
                                   "ImagePositionPatient": ["0", "0", str(8 * k)]}))
    other = session_factory(make_engine(postgres_url))
    results: list[list[str]] = []
    sweepers = [threading.Thread(target=lambda ss=ss: results.append(sweep(ss, cfg))) for ss in (pg_sessions, other)]
    for t in sweepers:
        t.start()
    for t in sweepers:
        t.join()
    assert sorted(u for r in results for u in r) == sorted(f"1.2.826.0.9.{i + 1}" for i in range(30))

    ran: list[int] = []
    lock = threading.Lock()

    def work(sessions, name: str) -> None:  # type: ignore[no-untyped-def]
        q = JobQueue(sessions)
        while (c := q.claim(name)) is not None:
            with lock:
                ran.append(c.id)
            assert q.finish(c.id, name, {"by": name})

    threads = [threading.Thread(target=work, args=(ss, f"node{n}-w{i}")) for n, ss in enumerate((pg_sessions, other))
               for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(ran) == 30 and len(set(ran)) == 30
    with pg_sessions() as s:
        assert {j.state for j in s.scalars(select(Job))} == {"done"}
        assert s.query(Job).count() == 30
