"""Answer a C-STORE request whose Affected SOP Instance UID is invalid, instead of aborting.

pynetdicom converts each received DIMSE message into a primitive; an Affected SOP Instance UID
over 64 characters makes the conversion raise, which aborts the whole association (with a
traceback): one bad request from a PACS also lost the instances queued behind it on that
association. Here such a request becomes a C-STORE primitive without that UID, marked with
``lgenode_refusal`` (status, reason, the UID as sent); the SCP answers it 0xC001 and the
association goes on.
"""

from __future__ import annotations

import types
from typing import Any

from pynetdicom.association import Association
from pynetdicom.dimse import DIMSEServiceProvider
from pynetdicom.dimse_messages import DIMSEMessage

from node.receive.header import STATUS_INVALID_UID


def _without(primitive: Any, keyword: str) -> None:
    # Still a request to serve (pynetdicom ignores one missing a mandatory field); the response
    # then leaves the field out, which C-STORE-RSP allows for the instance UID (U(=)).
    primitive.REQUEST_KEYWORDS = tuple(k for k in primitive.REQUEST_KEYWORDS if k != keyword)


def _to_primitive(msg: DIMSEMessage) -> Any:
    convert = type(msg).message_to_primitive
    if type(msg).__name__ != "C_STORE_RQ":
        return convert(msg)
    cs = msg.command_set
    refusal: tuple[int, str, str | None] | None = None
    removed = None
    if "AffectedSOPInstanceUID" in cs:
        value = cs["AffectedSOPInstanceUID"].value
        text = (value.decode("latin-1") if isinstance(value, bytes) else str(value or "")).strip("\0 ")
        if len(text) > 64:
            # Only the instance UID: an invalid SOP Class UID cannot match a negotiated context.
            removed = cs["AffectedSOPInstanceUID"]
            del cs["AffectedSOPInstanceUID"]
            refusal = (STATUS_INVALID_UID, f"request's Affected SOP Instance UID is not a valid UID "
                                           f"({len(text)} characters)", text[:80])
    try:
        primitive = convert(msg)
    finally:
        if removed is not None:
            cs.add(removed)
    if removed is not None:
        _without(primitive, "AffectedSOPInstanceUID")
        primitive.lgenode_refusal = refusal
    return primitive


class TolerantDIMSE(DIMSEServiceProvider):
    def receive_primitive(self, primitive: Any) -> None:
        if self.message is None:
            self.message = DIMSEMessage()
            # An instance attribute: it survives decode_msg switching the message's class.
            self.message.message_to_primitive = types.MethodType(_to_primitive, self.message)  # type: ignore[method-assign]
        super().receive_primitive(primitive)


def tolerate_malformed_requests(assoc: Association) -> None:
    """Install on a new acceptor association, before its threads start (EVT_CONN_OPEN)."""
    if type(assoc.dimse) is DIMSEServiceProvider:
        assoc.dimse.__class__ = TolerantDIMSE
