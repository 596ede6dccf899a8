"""The audit trail: who sent, read, reviewed or was sent what, one JSON object per line.

Records follow the DICOM audit message (PS3.15 Annex A.5, the IHE ATNA vocabulary) mapped onto
JSON: ``EventID`` / ``EventTypeCode`` are DICOM coded concepts (DCM scheme), ``EventActionCode``
C/R/U/D/E, ``EventOutcomeIndicator`` 0 (success), 4 (minor failure: a refusal, a denied
request), 8 (serious failure), 12 (major failure); ``ActiveParticipant`` lists who took part
(AE titles, user names, IP addresses) and ``ParticipantObjectIdentification`` what was touched
(Study/Series/SOP Instance UIDs, job ids, counts). Patient names or IDs are never written.

The file is apart from the operational log (its own path, no propagation to the root logger)
and is opened with ``WatchedFileHandler``, so logrotate can move it.
"""

from __future__ import annotations

import json
import logging
import logging.handlers
import os
import socket
import sys
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

# Outcome indicators (PS3.15 A.5.1, RFC 3881)
SUCCESS, MINOR_FAILURE, SERIOUS_FAILURE, MAJOR_FAILURE = 0, 4, 8, 12


@dataclass(frozen=True)
class Code:
    code: str
    display: str
    scheme: str = "DCM"

    def json(self) -> dict[str, str]:
        return {"code": self.code, "codeSystemName": self.scheme, "displayName": self.display}


# Event IDs (CID 400 "Audit Event ID")
APPLICATION_ACTIVITY = Code("110100", "Application Activity")
BEGIN_TRANSFERRING = Code("110102", "Begin Transferring DICOM Instances")
INSTANCES_ACCESSED = Code("110103", "DICOM Instances Accessed")
INSTANCES_TRANSFERRED = Code("110104", "DICOM Instances Transferred")
QUERY = Code("110112", "Query")
SECURITY_ALERT = Code("110113", "Security Alert")
USER_AUTHENTICATION = Code("110114", "User Authentication")
# Event type codes (CID 401 "Audit Event Type Code", CID 403 security alert types)
APPLICATION_START = Code("110120", "Application Start")
APPLICATION_STOP = Code("110121", "Application Stop")
LOGIN = Code("110122", "Login")
NODE_AUTHENTICATION = Code("110126", "Node Authentication")
SOFTWARE_CONFIGURATION = Code("110131", "Software Configuration")
USE_OF_RESTRICTED_FUNCTION = Code("110132", "Use of Restricted Function")
# Participant roles (CID 402 "Audit Active Participant Role ID Code")
ROLE_SOURCE = Code("110153", "Source Role ID")
ROLE_DESTINATION = Code("110152", "Destination Role ID")
ROLE_APPLICATION = Code("110150", "Application")
ROLE_LAUNCHER = Code("110151", "Application Launcher")


def participant(user_id: str, *, requestor: bool, role: Code | None = None, address: str | None = None,
                alternative: str | None = None, name: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"UserID": user_id, "UserIsRequestor": requestor}
    if alternative:
        out["AlternativeUserID"] = alternative
    if name:
        out["UserName"] = name
    if role is not None:
        out["RoleIDCode"] = role.json()
    if address:
        out["NetworkAccessPointID"] = address
        out["NetworkAccessPointTypeCode"] = 2  # IP address
    return out


def study(uid: str, **detail: Any) -> dict[str, Any]:
    """A participant object: a study (type 2 system object, role 3 report... PS3.15 A.5.3)."""
    return {"ParticipantObjectTypeCode": 2, "ParticipantObjectTypeCodeRole": 3,
            "ParticipantObjectIDTypeCode": Code("110180", "Study Instance UID").json(),
            "ParticipantObjectID": uid, **({"ParticipantObjectDetail": detail} if detail else {})}


def job(job_id: int | str, **detail: Any) -> dict[str, Any]:
    """A participant object: one of our jobs (its study/series UIDs in the detail)."""
    return {"ParticipantObjectTypeCode": 2, "ParticipantObjectTypeCodeRole": 3,
            "ParticipantObjectIDTypeCode": {"code": "job", "codeSystemName": "99LGENODE", "displayName": "Job"},
            "ParticipantObjectID": str(job_id), **({"ParticipantObjectDetail": detail} if detail else {})}


def query(text: str) -> dict[str, Any]:
    """A participant object: a query (the request path and its parameters: UIDs and states only)."""
    return {"ParticipantObjectTypeCode": 2, "ParticipantObjectTypeCodeRole": 24,
            "ParticipantObjectIDTypeCode": {"code": "query", "codeSystemName": "99LGENODE", "displayName": "API query"},
            "ParticipantObjectID": text}


_oplog = logging.getLogger(__name__)


class _AuditFileHandler(logging.handlers.WatchedFileHandler):
    """A failed audit write (disk full, file or folder removed) is reported on the operational
    log as one line, not a traceback on stderr, and never reaches the caller."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            super().emit(record)  # (the reopen after a rotation can raise outside logging's guard)
        except Exception:
            self.handleError(record)

    def handleError(self, record: logging.LogRecord) -> None:  # noqa: N802 (logging's name)
        exc = sys.exc_info()[1]
        _oplog.error("audit trail write failed", extra={"path": self.baseFilename,
                                                        "error": f"{type(exc).__name__}: {exc}"})


class AuditLog:
    """Writes audit records to one file; thread-safe. ``AuditLog(None)`` discards them."""

    def __init__(self, path: Path | None, source_id: str = "LGENODE") -> None:
        self.path = path
        self.source = {"AuditSourceID": source_id, "AuditEnterpriseSiteID": socket.gethostname(),
                       "AuditSourceTypeCode": 4}  # 4: application server process
        self._lock = threading.Lock()
        self._logger: logging.Logger | None = None
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            # Readable by the node's user and group only (it names users, hosts and studies).
            os.close(os.open(path, os.O_CREAT | os.O_APPEND | os.O_WRONLY, 0o640))
            handler = _AuditFileHandler(path, encoding="utf-8")
            handler.setFormatter(logging.Formatter("%(message)s"))
            # A private logger (not in the logging registry): never reaches the operational log.
            self._logger = logging.Logger(f"lgenode.audit.{id(self)}", logging.INFO)
            self._logger.addHandler(handler)
            self._logger.propagate = False

    @property
    def enabled(self) -> bool:
        return self._logger is not None

    def record(self, event: Code, *, action: str = "E", outcome: int = SUCCESS, types: Iterable[Code] = (),
               participants: Iterable[Mapping[str, Any]] = (), objects: Iterable[Mapping[str, Any]] = (),
               description: str | None = None, **details: Any) -> dict[str, Any]:
        rec: dict[str, Any] = {
            "EventDateTime": datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
            "EventID": event.json(),
            "EventActionCode": action,
            "EventOutcomeIndicator": outcome,
        }
        type_list = [t.json() for t in types]
        if type_list:
            rec["EventTypeCode"] = type_list
        if description:
            rec["EventOutcomeDescription"] = description
        rec["ActiveParticipant"] = [dict(p) for p in participants]
        rec["AuditSourceIdentification"] = self.source
        obj_list = [dict(o) for o in objects]
        if obj_list:
            rec["ParticipantObjectIdentification"] = obj_list
        if details:
            rec["Detail"] = details
        if self._logger is not None:
            line = json.dumps(rec, default=str, separators=(",", ":"))
            with self._lock:
                self._logger.info(line)
        return rec

    def close(self) -> None:
        if self._logger is not None:
            for h in list(self._logger.handlers):
                h.close()
                self._logger.removeHandler(h)
            self._logger = None


NULL_AUDIT = AuditLog(None)


def open_audit(cfg: Any) -> AuditLog:
    """The node's audit log from a NodeConfig (``audit.enabled``, ``audit.path``)."""
    if not cfg.audit.enabled:
        return AuditLog(None)
    return AuditLog(cfg.audit_path, source_id=cfg.dicom.ae_title)


__all__ = ["AuditLog", "Code", "NULL_AUDIT", "open_audit", "participant", "study", "job", "query",
           "SUCCESS", "MINOR_FAILURE", "SERIOUS_FAILURE", "MAJOR_FAILURE"]
