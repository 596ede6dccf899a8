"""A C-STORE SCU that sends dataset bytes exactly as given (pynetdicom's DIMSE layer, no encoding).

pynetdicom's ``send_c_store`` encodes a Dataset or streams a file, and refuses requests it
considers invalid (an Affected SOP Instance UID over 64 characters, a dataset whose encoding
does not match the transfer syntax). Tests of the node's refusals need exactly those requests
on the wire, so this builds the C-STORE-RQ primitive itself and hands it to the DIMSE provider,
many requests per association.
"""

from __future__ import annotations

import time
from io import BytesIO
from types import TracebackType
from typing import Iterable

from pydicom.uid import UID
from pynetdicom import AE
from pynetdicom.dimse_primitives import C_STORE


class AssociationFailed(RuntimeError):
    pass


class RawStoreSCU:
    """``with RawStoreSCU(port, [(sop_class, [ts, ...]), ...]) as scu: scu.store(...)``."""

    def __init__(self, port: int, contexts: Iterable[tuple[str, list[str]]], *, host: str = "127.0.0.1",
                 calling_ae: str = "TESTSCU", called_ae: str = "LGENODE", dimse_timeout: float = 60.0) -> None:
        self.ae = AE(ae_title=calling_ae)
        self.ae.dimse_timeout = dimse_timeout
        self.ae.acse_timeout = dimse_timeout
        for sop_class, syntaxes in contexts:
            self.ae.add_requested_context(sop_class, syntaxes)
        self.host, self.port, self.called_ae = host, port, called_ae
        self.assoc = None
        self._msg_id = 0

    def __enter__(self) -> "RawStoreSCU":
        self.assoc = self.ae.associate(self.host, self.port, ae_title=self.called_ae)
        if not self.assoc.is_established:
            raise AssociationFailed(f"association not established with 127.0.0.1:{self.port}")
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        if self.assoc is not None and self.assoc.is_established:
            self.assoc.release()

    @property
    def alive(self) -> bool:
        return self.assoc is not None and self.assoc.is_established

    def _context_id(self, sop_class: str, transfer_syntax: str) -> int:
        assert self.assoc is not None
        for cx in self.assoc.accepted_contexts:
            if cx.abstract_syntax == sop_class and cx.transfer_syntax[0] == transfer_syntax:
                return int(cx.context_id)
        raise ValueError(f"no accepted context for {sop_class} / {transfer_syntax}")

    def store(self, dataset: bytes, *, sop_class: str, sop_instance: str, transfer_syntax: str,
              context_sop_class: str | None = None) -> int | None:
        """Send one C-STORE-RQ; the response status, or None (no response: timeout or abort).

        ``sop_class``/``sop_instance`` are the request's Affected SOP Class/Instance UIDs; the
        instance UID is set without pynetdicom's validation so invalid ones reach the peer.
        ``context_sop_class`` picks the presentation context (default: ``sop_class``)."""
        assert self.assoc is not None
        if not self.assoc.is_established:
            return None
        cx_id = self._context_id(context_sop_class or sop_class, transfer_syntax)
        self._msg_id += 1
        req = C_STORE()
        req.MessageID = self._msg_id
        req.Priority = 2
        req.AffectedSOPClassUID = sop_class
        req._affected_sop_instance_uid = UID(sop_instance)  # bypasses the 64-character check on purpose
        # No bytes: a request without a data set (Command Data Set Type 0x0101); pynetdicom would
        # otherwise announce a data set and send none, and the peer would rightly wait for it.
        req.DataSet = BytesIO(dataset) if dataset else None
        assoc = self.assoc
        assoc._reactor_checkpoint.clear()  # as send_c_store does: pause the reactor while we wait
        try:
            while not assoc._is_paused and assoc.is_established:
                time.sleep(0.0001)
            assoc.dimse.send_msg(req, cx_id)
            _, rsp = assoc.dimse.get_msg(block=True)
        finally:
            assoc._reactor_checkpoint.set()
        if rsp is None or getattr(rsp, "Status", None) is None:
            return None
        return int(rsp.Status)


__all__ = ["AssociationFailed", "RawStoreSCU"]
