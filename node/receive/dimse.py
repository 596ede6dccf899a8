"""Answer a C-STORE request whose command set carries an invalid UID, instead of aborting.

pynetdicom converts each received DIMSE message into a primitive whose UID setters reject a
value over 64 characters; the exception aborts the whole association (with a traceback), so
one bad request from a PACS also loses the instances queued behind it on that association.
Here such a C-STORE request becomes a primitive without the offending Affected SOP Instance
UID, marked with ``invalid_command_uids``; the SCP answers it 0xC001 and the association goes on.
"""

from __future__ import annotations

import types
from typing import Any

from pynetdicom.association import Association
from pynetdicom.dimse import DIMSEServiceProvider
from pynetdicom.dimse_messages import DIMSEMessage

# Only the instance UID: an invalid SOP Class UID cannot match a negotiated context anyway.
_COMMAND_UIDS = ("AffectedSOPInstanceUID",)


def _to_primitive(msg: DIMSEMessage) -> Any:
    convert = type(msg).message_to_primitive
    try:
        return convert(msg)
    except ValueError:
        if type(msg).__name__ != "C_STORE_RQ":
            raise
    cs = msg.command_set
    removed: dict[str, Any] = {}
    for kw in _COMMAND_UIDS:
        if kw in cs:
            value = cs[kw].value
            text = value.decode("latin-1") if isinstance(value, bytes) else str(value)
            if not 0 < len(text.strip("\0 ")) <= 64:
                removed[kw] = cs[kw]
                del cs[kw]
    if not removed:
        return convert(msg)  # something else is wrong: let pynetdicom abort as before
    try:
        primitive = convert(msg)
    finally:
        for elem in removed.values():
            cs.add(elem)
    primitive.invalid_command_uids = sorted(removed)
    # Still a request to serve (pynetdicom ignores one missing a mandatory field); the response
    # then leaves the UID out, which C-STORE-RSP allows (U(=)).
    primitive.REQUEST_KEYWORDS = tuple(k for k in type(primitive).REQUEST_KEYWORDS if k not in removed)
    return primitive


class TolerantDIMSE(DIMSEServiceProvider):
    def receive_primitive(self, primitive: Any) -> None:
        if self.message is None:
            self.message = DIMSEMessage()
            # An instance attribute: it survives decode_msg switching the message's class.
            self.message.message_to_primitive = types.MethodType(_to_primitive, self.message)  # type: ignore[method-assign]
        super().receive_primitive(primitive)


def tolerate_invalid_command_uids(assoc: Association) -> None:
    """Install on a new acceptor association, before its threads start (EVT_CONN_OPEN)."""
    if type(assoc.dimse) is DIMSEServiceProvider:
        assoc.dimse.__class__ = TolerantDIMSE
