"""Workers: threads that claim jobs and run their stages in order.

Stages today: ``load`` (series -> Volume with geometry). The model and results issues add
``segment``, ``encode`` and ``deliver``; each stage is a callable taking and returning the
job context, timed and recorded in the job's result.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from sqlalchemy.orm import Session, sessionmaker

from models.io.errors import GeometryError
from node import metrics
from node.infer.load import geometry_summary, load_volume, series_files
from node.job.queue import Claimed, JobQueue

log = logging.getLogger(__name__)


@dataclass
class JobContext:
    job: Claimed
    store_root: Path
    sessions: sessionmaker[Session]
    files: Any = None  # FileStore, for stages that write objects
    volume: Any = None
    labels: Any = None
    model: tuple[str, str] = ("", "")
    measurements: Any = None
    aha: Any = None
    outgoing: list[Any] = field(default_factory=list)
    seg: Any = None  # remeasure jobs: the reviewed SEG
    source_series_uid: str | None = None
    result: dict[str, Any] = field(default_factory=dict)


class PermanentError(Exception):
    """A failure that a retry cannot fix (bad geometry, no images): fail at once."""


Stage = Callable[[JobContext], None]


def stage_load(ctx: JobContext) -> None:
    files = series_files(ctx.sessions, ctx.store_root, ctx.job.series_uid)
    try:
        ctx.volume = load_volume(files)
    except (GeometryError, ValueError) as exc:
        raise PermanentError(f"cannot load the series as a volume: {exc}") from exc
    ctx.result["geometry"] = geometry_summary(ctx.volume)
    ctx.result["n_files"] = len(files)


DEFAULT_STAGES: list[tuple[str, Stage]] = [("load", stage_load)]


def build_stages(cfg: Any, outbox: Any) -> dict[str, list[tuple[str, Stage]]]:
    """Stages per job kind.

    segment:   load -> segment (+ measurements) -> encode (SEG, SR, PDF) -> deliver
    remeasure: load the reviewed SEG on its source volume (+ measurements) -> encode SR -> deliver
    """
    from node.deliver.stage import DeliverStage
    from node.encode.stage import EncodeStage
    from node.infer.remeasure import stage_encode_reviewed_sr, stage_load_reviewed
    from node.infer.segment import SegmentStage

    weights = cfg.resolve(cfg.model.weights_dir) if cfg.model.weights_dir else None
    deliver = DeliverStage(outbox)
    return {
        "segment": [
            ("load", stage_load),
            ("segment", SegmentStage(weights, cfg.model.runtime)),
            ("encode", EncodeStage(cfg.model.write_report)),
            ("deliver", deliver),
        ],
        "remeasure": [
            ("load", stage_load_reviewed),
            ("encode", stage_encode_reviewed_sr),
            ("deliver", deliver),
        ],
    }


class Worker:
    def __init__(self, queue: JobQueue, sessions: sessionmaker[Session], store_root: Path, *,
                 stages: list[tuple[str, Stage]] | dict[str, list[tuple[str, Stage]]] | None = None, poll_interval: float = 1.0,
                 name: str | None = None, files: Any = None) -> None:
        self.queue = queue
        self.sessions = sessions
        self.store_root = store_root
        self.files = files
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
        ctx = JobContext(job=job, store_root=self.store_root, sessions=self.sessions, files=self.files)
        stages = self.stages.get(job.kind) if isinstance(self.stages, dict) else self.stages
        if stages is None:
            self._failed(job, "start", f"no stages for job kind {job.kind!r}", retryable=False)
            return
        timings: dict[str, float] = {}
        log.info("job started", extra={"job_id": job.id, "series_uid": job.series_uid, "attempt": job.attempt})
        metrics.JOBS.labels("running").inc()
        for name, stage in stages:
            self.queue.heartbeat(job.id, self.name, stage=name)
            t0 = time.perf_counter()
            try:
                stage(ctx)
            except PermanentError as exc:
                self._failed(job, name, str(exc), retryable=False, partial=ctx.result)
                return
            except Exception as exc:
                self._failed(job, name, f"{type(exc).__name__}: {exc}", retryable=True, partial=ctx.result)
                log.debug("stage traceback", extra={"job_id": job.id, "tb": traceback.format_exc()})
                return
            timings[name] = round(time.perf_counter() - t0, 4)
            metrics.JOB_SECONDS.labels(name).observe(timings[name])
        ctx.result["timings_s"] = timings
        if self.queue.finish(job.id, self.name, ctx.result):
            metrics.JOBS.labels("done").inc()
            log.info("job done", extra={"job_id": job.id, "series_uid": job.series_uid, "timings_s": timings})
        else:
            log.warning("job finished after losing its lease; result not recorded", extra={"job_id": job.id})

    def _failed(self, job: Claimed, stage: str, reason: str, *, retryable: bool,
                partial: dict[str, Any] | None = None) -> None:
        state = self.queue.fail(job.id, self.name, f"{stage}: {reason}", retryable=retryable, partial=partial)
        metrics.JOBS.labels("failed" if state == "failed" else "retry").inc()
        log.warning("job stage failed", extra={"job_id": job.id, "stage": stage, "reason": reason, "state": state})
