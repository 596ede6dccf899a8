"""`lgenode serve`: the SCP, the sweeps (APScheduler), the workers and the HTTP API (`node.api.app`)
in one process (`NodeService`), on the parts `node.core.build_core` makes."""

from __future__ import annotations

import logging
import signal
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from apscheduler.schedulers.background import BackgroundScheduler
from sqlalchemy import update

from node.cluster.fetch import PeerFetcher
from node.cluster.nodes import announce
from node.core import Core, build_core
from node.config import NodeConfig
from node.db.models import Series, SeriesState, utcnow
from node.job.queue import JobQueue
from node.deliver.outbox import Outbox
from node.job.stages import build_stages
from node.job.worker import Worker
from node.receive.scp import StorageSCP
from node.retrieve.dicomweb import RequestRunner
from node.security import audit as A
from node.security.startup import api_ssl_factory, build_authenticator, record_config_load, security_warnings
from node.series.completion import sweep
from node.store.retention import purge_expired

log = logging.getLogger(__name__)


class NodeService:
    def __init__(self, cfg: NodeConfig, *, config_path: Path | None = None) -> None:
        self.cfg = cfg
        # Security first: a missing API key variable or a bad certificate stops the start here.
        self.authenticator = build_authenticator(cfg) if cfg.api.enabled else None
        self._api_ssl = api_ssl_factory(cfg) if cfg.api.enabled and cfg.api.tls.enabled else None
        self.audit = A.open_audit(cfg)
        record_config_load(self.audit, cfg, config_path)
        for warning in security_warnings(cfg):
            log.warning("insecure configuration", extra={"warning": warning})
        self.core: Core = build_core(cfg)
        self.queue = JobQueue(self.core.sessions, lease_seconds=cfg.jobs.lease_seconds,
                              retry_backoff_seconds=cfg.jobs.retry_backoff_seconds)
        self.scp = StorageSCP(cfg.dicom, self.core.store, audit=self.audit, resolve=cfg.resolve)
        self.outbox = Outbox(self.core.sessions, self.core.files.root, cfg, audit=self.audit)
        self.stages = build_stages(cfg, self.outbox)
        # A cluster without shared storage: workers fetch files held by other nodes (WADO-RS).
        self.fetcher = (PeerFetcher(self.core.sessions, self.core.files, cfg.cluster, cfg.resolve)
                        if cfg.cluster.enabled else None)
        self.workers = [
            Worker(self.queue, self.core.sessions, self.core.files.root, poll_interval=cfg.jobs.poll_interval_seconds,
                   stages=self.stages, files=self.core.files, fetcher=self.fetcher)
            for _ in range(cfg.jobs.workers)
        ]
        # Inference requests: retrieval from cfg.sources, then following their jobs.
        self.requests = RequestRunner(self.core.sessions, self.core.store, cfg.sources, resolve=cfg.resolve,
                                      owner=cfg.dicom.ae_title)
        self.scheduler = BackgroundScheduler(timezone="UTC")
        self._api_server: Any = None
        self._stopped = threading.Event()
        self.warmed = threading.Event()  # set once warm_stages has run (see start())

    @property
    def single_node(self) -> bool:
        return self.cfg.database_url.startswith("sqlite")

    def recover(self) -> None:
        """Crash recovery before accepting anything: re-index orphan files, re-queue jobs."""
        self.core.store.reconcile()
        # Series that were still arriving when the node went down get a fresh idle window:
        # the peer may be about to retry what we did not acknowledge.
        with self.core.sessions.begin() as s:
            s.execute(update(Series).where(Series.state == SeriesState.RECEIVING).values(last_received_at=utcnow()))
        if self.single_node:
            self.requests.recover()  # a retrieval cut short continues at once (skipping what is stored)
            n = self.queue.requeue_all_running()
        else:
            n = self.queue.requeue_expired()
        if n:
            log.warning("re-queued interrupted jobs", extra={"count": n})

    def sweep_series(self) -> None:
        if sweep(self.core.sessions, self.cfg):
            for w in self.workers:
                w.wake()

    def warm_stages(self) -> None:
        """Load the model and the encoders once at start, so the first job is as fast as the next
        (measured by bench/latency). Best effort: a stage that cannot warm up fails its job later
        with the real reason."""
        stage_lists = self.stages.values() if isinstance(self.stages, dict) else [self.stages]
        seen: set[int] = set()
        t0 = time.monotonic()
        try:
            for stages in stage_lists:
                for name, stage in stages:
                    warm = getattr(stage, "warm", None)
                    if warm is None or id(stage) in seen:
                        continue
                    seen.add(id(stage))
                    try:
                        warm()
                    except Exception as exc:
                        log.warning("stage warm-up failed",
                                    extra={"stage": name, "error": f"{type(exc).__name__}: {exc}"})
        finally:
            self.warmed.set()
            # bench/ingest waits for this line: a fresh node's warm-up (imports, model load)
            # competes with the receiver for the GIL for a few seconds.
            log.info("stages warm", extra={"seconds": round(time.monotonic() - t0, 2)})

    def _purge(self) -> None:
        purge_expired(self.core.sessions, self.core.files, self.cfg.storage.retention_days)

    def _announce(self, starting: bool = False) -> None:
        c = self.cfg.cluster
        assert c.url is not None  # checked by the config
        announce(self.core.sessions, c.node_name, c.url, starting=starting)

    def start(self) -> None:
        self.recover()
        if self.cfg.cluster.enabled:
            self._announce(starting=True)  # before any job: peers must find where our files are
        self.scp.start()
        if self.cfg.cluster.enabled:
            self.scheduler.add_job(self._announce, "interval", seconds=self.cfg.cluster.heartbeat_seconds,
                                   id="cluster-heartbeat", max_instances=1, coalesce=True)
        s = self.cfg.series
        self.scheduler.add_job(self.sweep_series, "interval", seconds=s.sweep_interval_seconds, id="series-sweep",
                               max_instances=1, coalesce=True)
        self.scheduler.add_job(self.queue.requeue_expired, "interval", seconds=max(5.0, self.cfg.jobs.lease_seconds / 4),
                               id="lease-sweep", max_instances=1, coalesce=True)
        self.scheduler.add_job(self.requests.run_due, "interval", seconds=self.cfg.retrieve.sweep_interval_seconds,
                               id="inference-requests", max_instances=1, coalesce=True)
        if self.cfg.destinations:
            self.scheduler.add_job(self.outbox.run_due, "interval", seconds=self.cfg.delivery.sweep_interval_seconds,
                                   id="delivery-retry", max_instances=1, coalesce=True)
        if self.cfg.storage.retention_days > 0:
            self.scheduler.add_job(self._purge, "interval", hours=1, id="retention", max_instances=1, coalesce=True)
        self.scheduler.start()
        if self.workers:
            threading.Thread(target=self.warm_stages, name="warm-stages", daemon=True).start()
        for w in self.workers:
            w.start()
        if self.cfg.api.enabled:
            self._start_api()
        self.audit.record(A.APPLICATION_ACTIVITY, types=[A.APPLICATION_START],
                          participants=[A.participant(self.cfg.dicom.ae_title, requestor=False, role=A.ROLE_APPLICATION)],
                          dicom_port=self.scp.port, dicom_tls=self.scp.ssl_context is not None,
                          api_port=self.cfg.api.port if self.cfg.api.enabled else None,
                          api_tls=self.cfg.api.tls.enabled, api_auth=self.cfg.api.auth.mode)
        log.info("node started", extra={"ae_title": self.cfg.dicom.ae_title, "dicom_port": self.scp.port,
                                        "cluster_node": self.cfg.node_name,
                                        "api_port": self.cfg.api.port if self.cfg.api.enabled else None,
                                        "workers": len(self.workers)})

    def _start_api(self) -> None:
        import uvicorn

        from node.api.app import create_app

        app = create_app(self.core.sessions, self.core.files.root, lambda: self.scp.running,
                         min_free_mb=self.cfg.storage.min_free_mb,
                         workers=lambda: (sum(w.alive for w in self.workers), len(self.workers)),
                         auth=self.authenticator, audit=self.audit,
                         store=self.core.store, stow=self.cfg.api.stow,
                         sources=[x.name for x in self.cfg.sources],
                         destinations=[d.name for d in self.cfg.destinations], on_request=self._request_queued,
                         cluster_heartbeat_s=self.cfg.cluster.heartbeat_seconds if self.cfg.cluster.enabled else None)
        # log_config=None: uvicorn's errors go to our handler (JSON, one line each), not its own text one.
        config = uvicorn.Config(app, host=self.cfg.api.host, port=self.cfg.api.port, log_level="warning",
                                access_log=False, log_config=None,
                                # HTTPS with our context (BCP 195 profile, optional client certificates).
                                ssl_context_factory=self._api_ssl)
        self._api_server = uvicorn.Server(config)
        self._api_server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
        threading.Thread(target=self._api_server.run, name="api", daemon=True).start()

    def _request_queued(self) -> None:
        """A new inference request: run the request sweep now rather than at its next interval."""
        try:
            self.scheduler.modify_job("inference-requests", next_run_time=datetime.now(timezone.utc))
        except Exception:  # the scheduler is stopping: the request waits for the next start
            pass

    def stop(self) -> None:
        if self._stopped.is_set():
            return
        self._stopped.set()
        log.info("node stopping")
        self.scp.stop()  # stop accepting first: nothing new is acknowledged after this
        self.scheduler.shutdown(wait=False)
        for w in self.workers:
            w.stop()
        if self._api_server is not None:
            self._api_server.should_exit = True
        self.core.engine.dispose()
        self.audit.record(A.APPLICATION_ACTIVITY, types=[A.APPLICATION_STOP],
                          participants=[A.participant(self.cfg.dicom.ae_title, requestor=False, role=A.ROLE_APPLICATION)])
        self.audit.close()

    def run_forever(self) -> None:
        self.start()
        done = threading.Event()

        def _handle(signum: int, _frame: object) -> None:
            done.set()

        signal.signal(signal.SIGTERM, _handle)
        signal.signal(signal.SIGINT, _handle)
        done.wait()
        self.stop()
