"""Liveness (/health) and readiness (/ready), each with the reasons behind its answer.

* ``/health`` — is the process alive and are its parts running? 200 with ``"ok"`` or
  ``"degraded"`` (storage below ``storage.min_free_mb``, database unreachable, deliveries
  failing: states a restart does not fix, listed in ``reasons``); 503 ``"down"`` when a part of
  the process has stopped (DICOM SCP not listening, a job worker thread dead): restart it.
* ``/ready`` — can the node accept and store instances now? 200 only with the SCP listening, the
  database reachable and free space above the minimum; else 503 with the reasons (a sender
  would get 0xA700). Failing deliveries do not make the node unready: it still receives.

Both stay public whatever API authentication is configured (probes carry no credentials), so
they report states and counts, never identifiers or patient data.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, Callable

from fastapi import APIRouter, Response
from sqlalchemy import func, select, text
from sqlalchemy.orm import Session, sessionmaker

import node
from node import metrics
from node.cluster.nodes import pending_deliveries_by_node
from node.db.models import ClusterNode, Delivery, DeliveryState, utcnow

# A delivery that failed for good this recently still makes /health "degraded".
FAILED_DELIVERY_WINDOW = timedelta(hours=24)


@dataclass
class HealthSources:
    sessions: sessionmaker[Session]
    store_root: Path
    scp_alive: Callable[[], bool]
    min_free_mb: int = 0
    # (alive, configured) job worker threads; None: no workers in this process.
    workers: Callable[[], tuple[int, int]] | None = None
    # cluster.heartbeat_seconds when several nodes keep their own files (None: no cluster)
    cluster_heartbeat_s: float | None = None


# A node whose heartbeat is this many intervals old is taken to be gone.
STALE_HEARTBEATS = 3


def _checks(src: HealthSources) -> tuple[dict[str, Any], list[str], list[str], list[str]]:
    """The checks, and the reasons the node is down / not ready / degraded."""
    checks: dict[str, Any] = {}
    down: list[str] = []
    unready: list[str] = []
    degraded: list[str] = []

    db_ok = True
    try:
        with src.sessions() as s:
            s.execute(text("SELECT 1"))
        checks["database"] = "ok"
    except Exception as exc:
        db_ok = False
        checks["database"] = f"error: {type(exc).__name__}"
        unready.append("database unreachable")
        degraded.append("database unreachable")

    if src.scp_alive():
        checks["dicom_scp"] = "ok"
    else:
        checks["dicom_scp"] = "down"
        down.append("DICOM SCP not listening")
        unready.append("DICOM SCP not listening")

    free = shutil.disk_usage(src.store_root).free
    metrics.FREE_BYTES.set(free)
    minimum = src.min_free_mb * 1024 * 1024
    checks["storage_free_bytes"] = free
    checks["storage_min_free_bytes"] = minimum
    if free < minimum:
        checks["storage"] = "low"
        why = (f"storage free space {free // (1024 * 1024)} MB is below storage.min_free_mb "
               f"({src.min_free_mb} MB): C-STORE answers 0xA700")
        unready.append(why)
        degraded.append(why)
    else:
        checks["storage"] = "ok"

    if src.workers is not None:
        alive, configured = src.workers()
        checks["workers"] = {"alive": alive, "configured": configured}
        if alive < configured:
            down.append(f"{configured - alive} of {configured} job workers stopped")

    if db_ok:
        since = utcnow() - FAILED_DELIVERY_WINDOW
        try:
            with src.sessions() as s:
                retrying = s.scalar(select(func.count()).select_from(Delivery).where(
                    Delivery.state == DeliveryState.PENDING, Delivery.attempts > 0)) or 0
                # (A failed row's next_attempt_at is its last claim: close enough to "when".)
                failed = s.scalar(select(func.count()).select_from(Delivery).where(
                    Delivery.state == DeliveryState.FAILED, Delivery.next_attempt_at >= since)) or 0
        except Exception as exc:
            checks["deliveries"] = f"error: {type(exc).__name__}"
            degraded.append("delivery state could not be read")
            return checks, down, unready, degraded
        checks["deliveries"] = {"retrying": retrying, "failed_24h": failed}
        if retrying or failed:
            degraded.append(f"deliveries failing: {retrying} waiting for a retry, {failed} given up in the last 24 h "
                            "(see `lgenode jobs`; once fixed, `lgenode rerun --deliveries --all`)")
        if src.cluster_heartbeat_s is not None:
            _cluster_check(src, src.cluster_heartbeat_s, checks, degraded)
    return checks, down, unready, degraded


def _cluster_check(src: HealthSources, heartbeat_s: float, checks: dict[str, Any], degraded: list[str]) -> None:
    """Nodes that stopped announcing themselves while results only they can send wait (each node
    sends the deliveries whose files are on its own disk)."""
    now = utcnow()
    with src.sessions() as s:
        nodes = list(s.execute(select(ClusterNode.name, ClusterNode.updated_at)))
        waiting = pending_deliveries_by_node(s)
    stale = []
    for name, seen in nodes:
        age = (now - seen).total_seconds()
        if age > STALE_HEARTBEATS * heartbeat_s:
            stale.append({"name": name, "seconds_since_heartbeat": round(age),
                          "pending_deliveries": int(waiting.get(name, 0))})
    checks["cluster"] = {"nodes": len(nodes), "stale": stale}
    for n in stale:
        if n["pending_deliveries"]:
            degraded.append(f"cluster node {n['name']!r} last seen {n['seconds_since_heartbeat']} s ago holds "
                            f"{n['pending_deliveries']} undelivered result object(s) that only it can send "
                            "(start it again; `lgenode nodes`)")


_CHECKS_EXAMPLE = {"database": "ok", "dicom_scp": "ok", "storage_free_bytes": 52_613_349_376,
                   "storage_min_free_bytes": 524_288_000, "storage": "ok", "workers": {"alive": 1, "configured": 1},
                   "deliveries": {"retrying": 0, "failed_24h": 0}}


def _doc(ok: dict[str, Any], bad: dict[str, Any], bad_description: str) -> dict[int | str, dict[str, Any]]:
    return {200: {"content": {"application/json": {"example": ok}}},
            503: {"description": bad_description, "content": {"application/json": {"example": bad}}}}


def health_router(src: HealthSources) -> APIRouter:
    router = APIRouter(tags=["operations"])

    @router.get("/health", summary="Liveness, with reasons",
                description="Public (no credentials): is the process alive and are its parts running? 200 with "
                            "`status` `ok`, or `degraded` with the `reasons` (storage below "
                            "`storage.min_free_mb`, database unreachable, deliveries failing: a restart does not "
                            "fix these); 503 `down` when a part has stopped (DICOM SCP not listening, a job worker "
                            "dead): restart the node. Reports states and counts, never identifiers.",
                responses=_doc({"status": "ok", "version": node.__version__, "reasons": [], "checks": _CHECKS_EXAMPLE},
                               {"status": "down", "version": node.__version__, "reasons": ["DICOM SCP not listening"],
                                "checks": {**_CHECKS_EXAMPLE, "dicom_scp": "down"}}, "a part of the node has stopped"))
    def health(response: Response) -> dict[str, Any]:
        """Liveness: 200 "ok"/"degraded" (with reasons), 503 "down" when a part has stopped."""
        checks, down, _, degraded = _checks(src)
        status = "down" if down else "degraded" if degraded else "ok"
        response.status_code = 503 if down else 200
        return {"status": status, "version": node.__version__, "reasons": down + degraded, "checks": checks}

    @router.get("/ready", summary="Readiness, with reasons",
                description="Public (no credentials): can the node receive and store instances now? 200 with the "
                            "DICOM SCP listening, the database reachable and free space above "
                            "`storage.min_free_mb`; else 503 with the `reasons` (a sender would get 0xA700). "
                            "Failing deliveries do not make the node unready.",
                responses=_doc({"ready": True, "reasons": [], "checks": _CHECKS_EXAMPLE},
                               {"ready": False, "reasons": ["database unreachable"],
                                "checks": {**_CHECKS_EXAMPLE, "database": "error: OperationalError"}},
                               "the node cannot store instances now"))
    def ready(response: Response) -> dict[str, Any]:
        """Readiness: 200 when instances can be received and stored now, else 503 with reasons."""
        checks, _, unready, _ = _checks(src)
        response.status_code = 503 if unready else 200
        return {"ready": not unready, "reasons": unready, "checks": checks}

    return router
