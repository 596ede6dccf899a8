"""The delivery outbox: per-object, per-destination state in the database, retried with
exponential backoff (APScheduler sweep) until delivered or ``delivery.max_attempts`` is used up.

A retry re-sends the same stored file — same SOP Instance UIDs — so the PACS never gets a new
copy. Rows are claimed before sending (their next attempt is pushed past a send lease by a
conditional update), so two nodes sharing the database do not send the same object at once.
In a cluster without shared storage (``cluster.enabled``) each row names the node that wrote
its file, and a node claims only its own rows (and unnamed ones): the file is on its disk.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from datetime import datetime, timedelta
from pathlib import Path
from typing import Callable, Sequence
from urllib.parse import urlsplit

from sqlalchemy import or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from node.config import CStoreDestinationConfig, DeliveryConfig, NodeConfig, StowDestinationConfig
from node.db.models import Delivery, DeliveryState, utcnow
from node.deliver import CStoreDestination, DeliveryResult, Destination, StowDestination, deliver
from node.job.handover import OutgoingObject
from node.security import audit as A
from node.security.tls import client_context

log = logging.getLogger(__name__)

SEND_LEASE = timedelta(minutes=5)


__all__ = ["Outbox", "OutgoingObject", "delivery_summary", "transport_destination"]


def transport_destination(cfg: CStoreDestinationConfig | StowDestinationConfig, our_ae: str,
                          resolve: Callable[[Path], Path] = lambda p: p) -> Destination:
    """The transport's destination for a configured one (``our_ae``: the default calling AE title;
    ``resolve``: makes the TLS/CA file paths absolute, relative to the config file)."""
    if isinstance(cfg, CStoreDestinationConfig):
        return CStoreDestination(host=cfg.host, port=cfg.port, ae_title=cfg.ae_title,
                                 calling_ae_title=cfg.calling_ae_title or our_ae, name=cfg.name,
                                 acse_timeout_s=cfg.timeout_seconds, dimse_timeout_s=cfg.timeout_seconds,
                                 network_timeout_s=cfg.timeout_seconds,
                                 tls_context=client_context(cfg.tls, resolve) if cfg.tls.enabled else None)
    return StowDestination(url=cfg.url, name=cfg.name, timeout_s=cfg.timeout_seconds,
                           auth_header=cfg.auth_header.get_secret_value() if cfg.auth_header else None,
                           verify_tls=cfg.verify_tls, ca_file=str(resolve(cfg.ca_file)) if cfg.ca_file else None)


class Outbox:
    def __init__(self, sessions: sessionmaker[Session], store_root: Path, cfg: NodeConfig,
                 send: Callable[[Sequence[Path], Destination], list[DeliveryResult]] = deliver,
                 audit: A.AuditLog | None = None) -> None:
        self.sessions = sessions
        self.store_root = store_root
        self.policy: DeliveryConfig = cfg.delivery
        self.destinations = {d.name: transport_destination(d, cfg.dicom.ae_title, cfg.resolve)
                             for d in cfg.destinations}
        self.send = send
        self.audit = audit or A.NULL_AUDIT
        self.our_ae = cfg.dicom.ae_title
        self.node_name = cfg.node_name  # None: no cluster, every node reads every file

    def enqueue(self, job_id: int, objects: Sequence[OutgoingObject], only: Sequence[str] | None = None) -> int:
        """One pending row per (object, destination); re-enqueueing the same job is a no-op.
        ``only``: these destinations rather than all (an inference request that named them)."""
        n = 0
        now = utcnow()
        for name in self.destinations:
            if only is not None and name not in only:
                continue
            for obj in objects:
                try:
                    with self.sessions.begin() as s:
                        s.add(Delivery(job_id=job_id, destination=name, kind=obj.kind, sop_instance_uid=obj.sop_instance_uid,
                                       sop_class_uid=obj.sop_class_uid, path=obj.relpath, next_attempt_at=now,
                                       node=self.node_name))
                    n += 1
                except IntegrityError:
                    pass
        return n

    def backoff(self, attempts: int) -> float:
        return min(self.policy.retry_backoff_seconds * (2 ** max(attempts - 1, 0)), self.policy.max_backoff_seconds)

    def run_due(self, now: datetime | None = None, job_id: int | None = None) -> int:
        """Send every due pending object (optionally of one job); returns how many were delivered."""
        now = now or utcnow()
        q = select(Delivery.id, Delivery.next_attempt_at).where(
            Delivery.state == DeliveryState.PENDING, Delivery.next_attempt_at <= now)
        if job_id is not None:
            q = q.where(Delivery.job_id == job_id)
        if self.node_name is not None:
            # Another node's results are on its disk, not ours: it sends them.
            q = q.where(or_(Delivery.node == self.node_name, Delivery.node.is_(None)))
        with self.sessions() as s:
            due = s.execute(q.order_by(Delivery.id)).all()
        claimed: list[int] = []
        for did, nxt in due:
            with self.sessions.begin() as s:
                res = s.execute(update(Delivery).where(Delivery.id == did, Delivery.next_attempt_at == nxt,
                                                       Delivery.state == DeliveryState.PENDING)
                                .values(next_attempt_at=now + SEND_LEASE))
                if res.rowcount == 1:
                    claimed.append(did)
        if not claimed:
            return 0
        with self.sessions() as s:
            rows = list(s.scalars(select(Delivery).where(Delivery.id.in_(claimed))))
        groups: dict[str, list[Delivery]] = defaultdict(list)
        for r in rows:
            groups[r.destination].append(r)
        delivered = 0
        for name, items in groups.items():
            dest = self.destinations.get(name)
            if dest is None:
                self._record(items, {}, f"destination {name!r} is no longer configured", final=True)
                continue
            try:
                results = self.send([self.store_root / r.path for r in items], dest)
                by_uid = {res.sop_instance_uid: res for res in results}
                delivered += self._record(items, by_uid, None)
            except Exception as exc:  # a transport bug must not lose the rows: they stay pending
                by_uid = {}
                self._record(items, {}, f"{type(exc).__name__}: {exc}")
            self._audit(dest, items, by_uid)
        return delivered

    def _audit(self, dest: Destination, items: list[Delivery], results: dict[str, DeliveryResult]) -> None:
        """One "DICOM Instances Transferred" record (action R: read and sent by us) per attempt."""
        if not self.audit.enabled:
            return
        from node.db.models import Job

        with self.sessions() as s:
            jobs = {j.id: j for j in s.scalars(select(Job).where(Job.id.in_({r.job_id for r in items})))}
        objects = []
        for jid in sorted(jobs):
            j = jobs[jid]
            sent = [{"kind": r.kind, "sop_instance_uid": r.sop_instance_uid,
                     "ok": bool(results.get(r.sop_instance_uid) and results[r.sop_instance_uid].ok),
                     "detail": results[r.sop_instance_uid].detail if r.sop_instance_uid in results else None}
                    for r in items if r.job_id == jid]
            objects.append(A.study(j.study_uid, job_id=jid, series_uid=j.series_uid, objects=sent))
        n_ok = sum(1 for r in items if results.get(r.sop_instance_uid) and results[r.sop_instance_uid].ok)
        # A URL may carry user:password@: never into the trail.
        url = "" if isinstance(dest, CStoreDestination) else urlsplit(dest.url)._replace(
            netloc=urlsplit(dest.url).netloc.rpartition("@")[2]).geturl()
        where = f"{dest.host}:{dest.port}" if isinstance(dest, CStoreDestination) else url
        peer_id = dest.ae_title if isinstance(dest, CStoreDestination) else url
        self.audit.record(
            A.INSTANCES_TRANSFERRED, action="R",
            outcome=A.SUCCESS if n_ok == len(items) else A.MINOR_FAILURE if n_ok else A.SERIOUS_FAILURE,
            participants=[A.participant(self.our_ae, requestor=True, role=A.ROLE_SOURCE),
                          A.participant(peer_id, requestor=False, role=A.ROLE_DESTINATION,
                                        address=dest.host if isinstance(dest, CStoreDestination) else None,
                                        alternative=dest.name or None)],
            objects=objects, destination=dest.name or peer_id, transport="cstore" if isinstance(dest, CStoreDestination) else "stow",
            endpoint=where, tls=bool(getattr(dest, "tls_context", None)) or where.startswith("https://"),
            counts={"sent": len(items), "delivered": n_ok, "failed": len(items) - n_ok})

    def _record(self, items: list[Delivery], results: dict[str, DeliveryResult], error: str | None,
                final: bool = False) -> int:
        now = utcnow()
        ok = 0
        errors: list[str] = []
        with self.sessions.begin() as s:
            for item in items:
                row = s.get(Delivery, item.id)
                assert row is not None
                row.attempts += 1
                res = results.get(row.sop_instance_uid)
                if res is not None and res.ok:
                    row.state = DeliveryState.DELIVERED
                    row.delivered_at = now
                    row.last_error = res.detail or None
                    ok += 1
                    continue
                row.last_error = (error or (res.detail if res else "no result from transport")
                                  or f"status {res.status if res else None}")[:1000]
                errors.append(row.last_error)
                if final or row.attempts >= self.policy.max_attempts:
                    row.state = DeliveryState.FAILED
                else:
                    row.next_attempt_at = now + timedelta(seconds=self.backoff(row.attempts))
            if ok:
                log.info("delivered", extra={"count": ok, "destination": items[0].destination})
            if ok < len(items):
                # The errors of this attempt (`items` are the rows as loaded, before it: their
                # last_error is the previous attempt's, None the first time).
                log.warning("delivery failed; will retry", extra={
                    "count": len(items) - ok, "destination": items[0].destination,
                    "error": errors[0] if errors else None, "distinct_errors": len(set(errors))})
        return ok


def delivery_summary(sessions: sessionmaker[Session], job_ids: Sequence[int]) -> dict[int, dict[str, int]]:
    """{job_id: {state: count}} for `lgenode jobs` and the API."""
    out: dict[int, dict[str, int]] = defaultdict(lambda: defaultdict(int))  # type: ignore[arg-type]
    if not job_ids:
        return {}
    with sessions() as s:
        for jid, state in s.execute(select(Delivery.job_id, Delivery.state).where(Delivery.job_id.in_(list(job_ids)))):
            out[jid][state] += 1
    return {k: dict(v) for k, v in out.items()}
