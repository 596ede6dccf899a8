"""Workers: threads that claim jobs and run their stages in order.

Each stage is called with the job's `JobRun` and the previous stage's output and returns its
own (`node.job.handover`); it is timed, and its name is recorded as the job's current stage. A
`PermanentError` fails the job at once; any other exception schedules a retry. The stages of
each job kind are wired in `node.job.stages`.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import traceback
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy.orm import Session, sessionmaker

from node import metrics
from node.infer.load import stage_load
from node.job.errors import PermanentError
from node.job.handover import JobRun, Stage
from node.job.queue import Claimed, JobQueue
from node.store.files import FileStore

if TYPE_CHECKING:
    from node.cluster.fetch import PeerFetcher

log = logging.getLogger(__name__)

NamedStages = list[tuple[str, Stage[Any, Any]]]

# Without configured stages a worker only loads the series (tests of the queue and the load stage).
DEFAULT_STAGES: NamedStages = [("load", stage_load)]


class Worker:
    """A thread that claims jobs from ``queue`` and runs their stages.

    Parameters
    ----------
    queue, sessions, store_root:
        The job queue, the database and the instance store's root.
    stages:
        Stages per job kind (`node.job.stages.build_stages`), or one list for every kind;
        `DEFAULT_STAGES` when omitted.
    poll_interval:
        Seconds between polls of an empty queue (`wake` cuts the wait short).
    name:
        The worker's name in leases (default host:pid:thread).
    files:
        The file store, for stages that write results.
    fetcher:
        In a cluster without shared storage: fetches files held by other nodes (node/cluster/fetch.py).
    """

    def __init__(self, queue: JobQueue, sessions: sessionmaker[Session], store_root: Path, *,
                 stages: NamedStages | dict[str, NamedStages] | None = None, poll_interval: float = 1.0,
                 name: str | None = None, files: FileStore | None = None,
                 fetcher: PeerFetcher | None = None) -> None:
        self.queue = queue
        self.sessions = sessions
        self.store_root = store_root
        self.files = files
        self.fetcher = fetcher
        self.stages = stages or DEFAULT_STAGES
        self.poll_interval = poll_interval
        self.name = name or f"{socket.gethostname()}:{os.getpid()}:{threading.get_ident()}"
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name=f"worker-{self.name}", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread:
            self._thread.join(timeout)

    def wake(self) -> None:
        self._wake.set()

    @property
    def alive(self) -> bool:
        """The worker thread is running (for /health)."""
        return self._thread is not None and self._thread.is_alive()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                ran = self.run_once()
            except Exception:
                log.exception("worker loop error")
                ran = False
            if not ran:
                self._wake.wait(self.poll_interval)
                self._wake.clear()

    def run_once(self) -> bool:
        job = self.queue.claim(self.name)
        if job is None:
            return False
        self.run_job(job)
        return True

    def run_job(self, job: Claimed) -> None:
        """Run the job's stages in order and record the result or the failure."""
        run = JobRun(job=job, store_root=self.store_root, sessions=self.sessions, files=self.files,
                     fetcher=self.fetcher)
        stages = self.stages.get(job.kind) if isinstance(self.stages, dict) else self.stages
        if stages is None:
            self._failed(job, "start", f"no stages for job kind {job.kind!r}", retryable=False)
            return
        timings: dict[str, float] = {}
        log.info("job started", extra={"job_id": job.id, "series_uid": job.series_uid, "attempt": job.attempt})
        metrics.JOBS.labels("running").inc()
        data: Any = None
        for name, stage in stages:
            self.queue.heartbeat(job.id, self.name, stage=name)
            t0 = time.perf_counter()
            try:
                data = stage(run, data)
            except PermanentError as exc:
                self._failed(job, name, str(exc), retryable=False, partial=run.result)
                return
            except Exception as exc:
                self._failed(job, name, f"{type(exc).__name__}: {exc}", retryable=True, partial=run.result)
                log.debug("stage traceback", extra={"job_id": job.id, "tb": traceback.format_exc()})
                return
            timings[name] = round(time.perf_counter() - t0, 4)
            metrics.JOB_SECONDS.labels(name).observe(timings[name])
        run.result["timings_s"] = timings
        if self.queue.finish(job.id, self.name, run.result):
            metrics.JOBS.labels("done").inc()
            log.info("job done", extra={"job_id": job.id, "series_uid": job.series_uid, "timings_s": timings})
        else:
            log.warning("job finished after losing its lease; result not recorded", extra={"job_id": job.id})

    def _failed(self, job: Claimed, stage: str, reason: str, *, retryable: bool,
                partial: dict[str, Any] | None = None) -> None:
        state = self.queue.fail(job.id, self.name, f"{stage}: {reason}", retryable=retryable, partial=partial)
        metrics.JOBS.labels("failed" if state == "failed" else "retry").inc()
        log.warning("job stage failed", extra={"job_id": job.id, "stage": stage, "reason": reason, "state": state})
