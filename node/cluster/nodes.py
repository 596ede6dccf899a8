"""The ``nodes`` table: where each cluster node's DICOMweb endpoint is (no static peer lists)."""

from __future__ import annotations

import logging
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from node.db.models import ClusterNode, Delivery, DeliveryState, utcnow

log = logging.getLogger(__name__)


def announce(sessions: sessionmaker[Session], name: str, url: str, *, starting: bool = False) -> None:
    """Record (or refresh) this node's entry: its URL and a heartbeat. ``starting``: also the start time."""
    now = utcnow()
    for _ in range(2):  # two nodes may insert the same name at once (a misconfiguration): retry as update
        try:
            with sessions.begin() as s:
                row = s.get(ClusterNode, name)
                if row is None:
                    s.add(ClusterNode(name=name, url=url.rstrip("/"), started_at=now, updated_at=now))
                    log.info("cluster node announced", extra={"node": name, "url": url})
                else:
                    if row.url != url.rstrip("/"):
                        log.warning("cluster node URL changed", extra={"node": name, "old_url": row.url, "url": url})
                    row.url = url.rstrip("/")
                    row.updated_at = now
                    if starting:
                        row.started_at = now
            return
        except IntegrityError:
            continue


def node_url(sessions: sessionmaker[Session], name: str) -> tuple[str, datetime] | None:
    """(DICOMweb base URL, last heartbeat) of node ``name``, or None when it never announced itself."""
    with sessions() as s:
        row = s.get(ClusterNode, name)
        return None if row is None else (row.url, row.updated_at)


def pending_deliveries_by_node(session: Session) -> dict[str | None, int]:
    """Result objects waiting to be sent, by the node holding their files (only it sends them:
    a node gone for good strands its own)."""
    return dict(session.execute(select(Delivery.node, func.count()).where(
        Delivery.state == DeliveryState.PENDING).group_by(Delivery.node)).all())  # type: ignore[arg-type]
