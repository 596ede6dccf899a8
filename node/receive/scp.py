"""The Storage SCP (pynetdicom): C-ECHO and C-STORE, stored durably before Success."""

from __future__ import annotations

import logging
import socket
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pynetdicom import AE, evt
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

from node import metrics
from node.config import DicomConfig
from node.receive import reactor
from node.receive.acl import PeerPolicy
from node.receive.contexts import STORAGE_SOP_CLASSES, TRANSFER_SYNTAXES
from node.receive.audit import AssociationAudit
from node.receive.dimse import tolerate_malformed_requests
from node.receive.header import STATUS_SUCCESS, parse_header
from node.store.ingest import InstanceStore, ingest_refusal
from node.security.audit import AuditLog
from node.security.tls import server_context

log = logging.getLogger(__name__)


class StorageSCP:
    def __init__(self, cfg: DicomConfig, store: InstanceStore, *, audit: AuditLog | None = None,
                 resolve: Callable[[Path], Path] = lambda p: p) -> None:
        self.cfg = cfg
        self.store = store
        self.policy = PeerPolicy(cfg)
        self.audit = AssociationAudit(audit or AuditLog(None), cfg.ae_title)
        # DICOM TLS (BCP 195) on this port when dicom.tls.enabled; built now so a bad
        # certificate or key stops the start with its reason.
        self.ssl_context = server_context(cfg.tls, resolve) if cfg.tls.enabled else None
        self.ae = AE(ae_title=cfg.ae_title)
        self.ae.maximum_associations = cfg.max_associations
        self.ae.maximum_pdu_size = cfg.max_pdu_size
        self.ae.network_timeout = cfg.network_timeout_seconds
        self.ae.acse_timeout = cfg.acse_timeout_seconds
        self.ae.dimse_timeout = cfg.dimse_timeout_seconds
        # The called/calling AE checks are done by PeerPolicy in EVT_REQUESTED, so that the
        # IP restriction and the log line come from one place.
        self.ae.require_called_aet = False
        self.ae.require_calling_aet = []
        self.ae.add_supported_context(Verification)
        for sop_class in STORAGE_SOP_CLASSES:
            self.ae.add_supported_context(sop_class, TRANSFER_SYNTAXES)
        self._server: Any = None

    # -- lifecycle -------------------------------------------------------
    def start(self) -> None:
        handlers = [
            (evt.EVT_CONN_OPEN, self._on_conn_open),
            (evt.EVT_REQUESTED, self._on_requested),
            (evt.EVT_C_ECHO, self._on_echo),
            (evt.EVT_C_STORE, self._on_store_audited),
            (evt.EVT_ACCEPTED, self._on_accepted),
            (evt.EVT_CONN_CLOSE, self._on_conn_close),
        ]
        # Event-driven associations: see node/receive/reactor.py for why and how.
        self._server = reactor.make_server(self.ae, (self.cfg.bind_address, self.cfg.port), handlers,
                                           ssl_context=self.ssl_context,
                                           on_handshake_failure=self.audit.tls_failure)
        self._server.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        log.info("storage SCP listening", extra={"ae_title": self.cfg.ae_title, "address": self.cfg.bind_address,
                                                  "port": self.port, "tls": self.ssl_context is not None})

    @property
    def running(self) -> bool:
        return self._server is not None

    @property
    def port(self) -> int:
        return int(self._server.server_address[1]) if self._server else self.cfg.port

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server = None

    # -- handlers --------------------------------------------------------
    def _on_conn_open(self, event: evt.Event) -> None:
        assoc = event.assoc
        # An id that ties together every log line of one association (refusals, rejections).
        assoc.lgenode_id = uuid.uuid4().hex[:12]
        tolerate_malformed_requests(assoc)
        sock = assoc.dul.socket
        if sock is not None and sock.socket is not None:
            sock.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def _on_requested(self, event: evt.Event) -> None:
        assoc = event.assoc
        rq = assoc.requestor.primitive
        called = rq.called_ae_title if isinstance(rq.called_ae_title, str) else rq.called_ae_title.decode()
        calling = rq.calling_ae_title if isinstance(rq.calling_ae_title, str) else rq.calling_ae_title.decode()
        address = assoc.requestor.address
        decision = self.policy.decide(called, calling, address)
        ids = {"association": getattr(assoc, "lgenode_id", None), "calling_ae": calling.strip(),
               "called_ae": called.strip(), "peer": address}
        if decision.accept:
            metrics.ASSOCIATIONS.labels("accepted").inc()
            log.info("association accepted", extra=ids)
            return
        metrics.ASSOCIATIONS.labels("rejected").inc()
        log.warning("association rejected", extra={**ids, "reason": decision.reason})
        self.audit.rejected(assoc, calling.strip(), called.strip(), address, decision.reason)
        assert decision.reject is not None
        assoc.acse.send_reject(*decision.reject)
        # As pynetdicom does for its own rejections: wait until the DUL has sent the
        # A-ASSOCIATE-RJ and closed the transport, else the peer only sees a dropped connection.
        assoc.kill()

    def _on_echo(self, event: evt.Event) -> int:
        return STATUS_SUCCESS

    # -- audit trail (node/receive/audit.py) -------------------------------
    def _on_accepted(self, event: evt.Event) -> None:
        self.audit.accepted(event.assoc)

    def _on_store_audited(self, event: evt.Event) -> int:
        status = self._on_store(event)
        if status != STATUS_SUCCESS:
            self.audit.refused(event.assoc, status)  # (stored ones are counted in _on_store)
        return status

    def _on_conn_close(self, event: evt.Event) -> None:
        self.audit.closed(event.assoc)

    def _on_store(self, event: evt.Event) -> int:
        t0 = time.perf_counter()
        req = event.request
        assoc = event.assoc
        calling = assoc.requestor.ae_title.strip()
        # Who sent what, on every refusal line (D6): the instance, the peer and the association.
        where = {"sop_instance_uid": _shown(req.AffectedSOPInstanceUID), "calling_ae": calling,
                 "peer": assoc.requestor.address, "association": getattr(assoc, "lgenode_id", None)}
        refusal = getattr(req, "lgenode_refusal", None)  # a malformed request (node/receive/dimse.py)
        if refusal is not None:
            status, reason, uid = refusal
            return self._refused(status, reason, {**where, "sop_instance_uid": uid or where["sop_instance_uid"]})
        try:
            encoded = event.encoded_dataset(include_meta=True)
            # The dataset is the tail of `encoded` (pynetdicom prepends preamble + file meta),
            # so the meta we just built need not be parsed back to find it.
            with req.DataSet.getbuffer() as view:
                dataset_len = view.nbytes
            header = parse_header(
                encoded,
                affected_sop_class=str(req.AffectedSOPClassUID),
                affected_sop_instance=str(req.AffectedSOPInstanceUID),
                transfer_syntax=str(event.context.transfer_syntax),
                dataset_offset=len(encoded) - dataset_len,
            )
            result = self.store.ingest(header, encoded, calling)
        except Exception as exc:
            refusal = ingest_refusal(exc)
            if refusal.cause == "refused":
                return self._refused(refusal.status, refusal.reason, where)
            if refusal.cause == "storage_full":
                return self._refused(refusal.status, refusal.reason, where, outcome="out_of_resources",
                                     level=logging.ERROR)
            # Disk or database failure: the peer must keep the instance and retry later.
            log.error("instance refused: could not be stored", exc_info=True,
                      extra={**where, "status": f"0x{refusal.status:04X}", "reason": refusal.reason})
            metrics.INSTANCES_RECEIVED.labels("out_of_resources").inc()
            return refusal.status
        if result.conflict:
            # D9: same SOP Instance UID, other content. The first copy is kept (as Orthanc does by
            # default) and the sender told Success, but the conflict is logged and counted.
            metrics.DUPLICATE_CONFLICTS.inc()
            log.warning("duplicate SOP Instance UID with different content: kept the first copy",
                        extra={**where, "series_uid": header.series_uid, "stored_bytes": result.stored_size,
                               "received_bytes": len(encoded)})
        self.audit.stored(event.assoc, header, duplicate=result.duplicate)
        metrics.INSTANCES_RECEIVED.labels("duplicate" if result.duplicate else "stored").inc()
        metrics.STORE_SECONDS.observe(time.perf_counter() - t0)
        return STATUS_SUCCESS

    def _refused(self, status: int, reason: str, where: dict[str, Any], *, outcome: str = "refused",
                 level: int = logging.WARNING) -> int:
        metrics.INSTANCES_RECEIVED.labels(outcome).inc()
        log.log(level, "instance refused", extra={**where, "status": f"0x{status:04X}", "reason": reason})
        return status


def _shown(uid: object) -> str | None:
    """A request UID for the log: as sent, cut short (it may be anything a peer sends)."""
    return None if uid is None else str(uid)[:80]
