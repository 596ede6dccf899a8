"""The delivery outbox: per-object, per-destination state in the database, retried with
exponential backoff (APScheduler sweep) until delivered or ``delivery.max_attempts`` is used up.

A retry re-sends the same stored file — same SOP Instance UIDs — so the PACS never gets a new
copy. Rows are claimed before sending (their next attempt is pushed past a send lease by a
conditional update), so two nodes sharing the database do not send the same object at once.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from datetime import datetime, timedelta
from pathlib import Path
from typing import Callable, Sequence

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from node.config import CStoreDestinationConfig, DeliveryConfig, NodeConfig, StowDestinationConfig
from node.db.models import Delivery, DeliveryState, utcnow
from node.deliver import CStoreDestination, DeliveryResult, Destination, StowDestination, deliver
from node.job.handover import OutgoingObject

log = logging.getLogger(__name__)

SEND_LEASE = timedelta(minutes=5)


__all__ = ["Outbox", "OutgoingObject", "delivery_summary", "transport_destination"]


def transport_destination(cfg: CStoreDestinationConfig | StowDestinationConfig, our_ae: str) -> Destination:
    """The transport's destination for a configured one (``our_ae``: the default calling AE title)."""
    if isinstance(cfg, CStoreDestinationConfig):
        return CStoreDestination(host=cfg.host, port=cfg.port, ae_title=cfg.ae_title,
                                 calling_ae_title=cfg.calling_ae_title or our_ae, name=cfg.name,
                                 acse_timeout_s=cfg.timeout_seconds, dimse_timeout_s=cfg.timeout_seconds,
                                 network_timeout_s=cfg.timeout_seconds)
    return StowDestination(url=cfg.url, auth_header=cfg.auth_header, name=cfg.name, timeout_s=cfg.timeout_seconds)


class Outbox:
    def __init__(self, sessions: sessionmaker[Session], store_root: Path, cfg: NodeConfig,
                 send: Callable[[Sequence[Path], Destination], list[DeliveryResult]] = deliver) -> None:
        self.sessions = sessions
        self.store_root = store_root
        self.policy: DeliveryConfig = cfg.delivery
        self.destinations = {d.name: transport_destination(d, cfg.dicom.ae_title) for d in cfg.destinations}
        self.send = send

    def enqueue(self, job_id: int, objects: Sequence[OutgoingObject]) -> int:
        """One pending row per (object, destination); re-enqueueing the same job is a no-op."""
        n = 0
        now = utcnow()
        for name in self.destinations:
            for obj in objects:
                try:
                    with self.sessions.begin() as s:
                        s.add(Delivery(job_id=job_id, destination=name, kind=obj.kind, sop_instance_uid=obj.sop_instance_uid,
                                       sop_class_uid=obj.sop_class_uid, path=obj.relpath, next_attempt_at=now))
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
                self._record(items, {}, f"{type(exc).__name__}: {exc}")
        return delivered

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
