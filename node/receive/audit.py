"""Audit records for the Storage SCP: who sent what, per association.

One "DICOM Instances Transferred" record (action C) when an association that carried
C-STOREs ends: the calling/called AE titles, the peer's IP (and TLS certificate subject), the
studies and series with their counts (stored, duplicate) and the refusals by status. A
rejected association or a failed TLS handshake is a "Security Alert" (Node Authentication).
"""

from __future__ import annotations

import threading
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from node.security import audit as A
from node.security.tls import peer_subject


@dataclass
class _Stats:
    calling: str
    called: str
    address: str
    tls_subject: str | None
    started: datetime = field(default_factory=lambda: datetime.now(timezone.utc))
    studies: dict[str, dict[str, Any]] = field(default_factory=dict)
    refused: Counter[str] = field(default_factory=Counter)
    stored: int = 0
    duplicates: int = 0


def _text(value: Any) -> str:
    return (value.decode("ascii", "replace") if isinstance(value, bytes) else str(value)).strip()


class AssociationAudit:
    def __init__(self, log: A.AuditLog, our_ae: str) -> None:
        self.log = log
        self.our_ae = our_ae
        self._stats: dict[int, _Stats] = {}
        self._lock = threading.Lock()

    @staticmethod
    def _tls(assoc: Any) -> str | None:
        sock = getattr(getattr(assoc.dul, "socket", None), "socket", None)
        return peer_subject(sock)

    def accepted(self, assoc: Any) -> None:
        if not self.log.enabled:
            return
        rq = assoc.requestor
        called = getattr(rq.primitive, "called_ae_title", None) or assoc.acceptor.ae_title  # as the peer addressed us
        st = _Stats(_text(rq.ae_title), _text(called), str(rq.address), self._tls(assoc))
        with self._lock:
            self._stats[id(assoc)] = st

    def refused(self, assoc: Any, status: int) -> None:
        st = self._stats.get(id(assoc))
        if st is not None:
            st.refused[f"0x{status:04X}"] += 1

    def stored(self, assoc: Any, header: Any, duplicate: bool = False) -> None:
        st = self._stats.get(id(assoc))
        if st is None:
            return
        study = st.studies.setdefault(header.study_uid, {"stored": 0, "duplicates": 0, "series": defaultdict(int)})
        study["series"][header.series_uid] += 1
        if duplicate:
            st.duplicates += 1
            study["duplicates"] += 1
        else:
            st.stored += 1
            study["stored"] += 1

    def closed(self, assoc: Any) -> None:
        with self._lock:
            st = self._stats.pop(id(assoc), None)
        if st is None or not (st.studies or st.refused):
            return  # an echo, or nothing sent: not a transfer
        n_refused = sum(st.refused.values())
        self.log.record(
            A.INSTANCES_TRANSFERRED, action="C", outcome=A.SUCCESS if n_refused == 0 else A.MINOR_FAILURE,
            participants=[
                A.participant(st.calling, requestor=True, role=A.ROLE_SOURCE, address=st.address,
                              alternative=st.tls_subject),
                A.participant(self.our_ae, requestor=False, role=A.ROLE_DESTINATION),
            ],
            objects=[A.study(uid, stored=s["stored"], duplicates=s["duplicates"],
                             series={k: v for k, v in s["series"].items()})
                     for uid, s in st.studies.items()],
            description=f"{n_refused} refused" if n_refused else None,
            association={"calling_ae": st.calling, "called_ae": st.called, "peer": st.address,
                         "tls_subject": st.tls_subject, "started": st.started.isoformat(timespec="milliseconds")},
            counts={"stored": st.stored, "duplicates": st.duplicates, "refused": n_refused},
            refused_by_status=dict(st.refused),
        )

    def rejected(self, assoc: Any, calling: str, called: str, address: str, reason: str | None) -> None:
        self.log.record(A.SECURITY_ALERT, action="E", outcome=A.MINOR_FAILURE, types=[A.NODE_AUTHENTICATION],
                        participants=[A.participant(calling or "?", requestor=True, address=address,
                                                    alternative=self._tls(assoc)),
                                      A.participant(self.our_ae, requestor=False, role=A.ROLE_DESTINATION)],
                        description=f"association rejected: {reason}", called_ae=called)

    def tls_failure(self, address: tuple[str, int], reason: str) -> None:
        self.log.record(A.SECURITY_ALERT, action="E", outcome=A.MINOR_FAILURE, types=[A.NODE_AUTHENTICATION],
                        participants=[A.participant("?", requestor=True, address=address[0]),
                                      A.participant(self.our_ae, requestor=False, role=A.ROLE_DESTINATION)],
                        description=f"TLS handshake failed: {reason}")


__all__ = ["AssociationAudit"]
