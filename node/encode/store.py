"""Keep a result object in the node's own store (durable, indexed) so delivery can re-send it."""

from __future__ import annotations

import hashlib
from io import BytesIO

from pydicom.dataset import Dataset
from pydicom.filewriter import dcmwrite
from sqlalchemy.orm import Session, sessionmaker

from node.job.handover import OutgoingObject
from node.receive.header import InstanceHeader
from node.store.files import FileStore
from node.store.ingest import index_instance


def store_result(files: FileStore, sessions: sessionmaker[Session], kind: str, ds: Dataset) -> OutgoingObject:
    """Write ``ds`` under the store root like a received instance and index it (once).

    Parameters
    ----------
    files, sessions:
        The node's file store and database.
    kind:
        ``seg``, ``sr`` or ``pdf``.
    ds:
        The encoded object (with file meta).

    Returns
    -------
    OutgoingObject
        What the outbox needs to send (and re-send) the stored file.
    """
    buf = BytesIO()
    dcmwrite(buf, ds, enforce_file_format=True)
    header = InstanceHeader(
        sop_class_uid=str(ds.SOPClassUID), sop_instance_uid=str(ds.SOPInstanceUID),
        study_uid=str(ds.StudyInstanceUID), series_uid=str(ds.SeriesInstanceUID),
        transfer_syntax_uid=str(ds.file_meta.TransferSyntaxUID),
        attrs={"Modality": str(ds.Modality), "SeriesDescription": str(ds.get("SeriesDescription", "")),
               "SeriesNumber": str(ds.get("SeriesNumber", ""))},
    )
    relpath = files.relpath_for(header.study_uid, header.series_uid, header.sop_instance_uid)
    stored = files.write(relpath, buf.getvalue())
    if stored.created:
        with sessions.begin() as s:
            index_instance(s, header, relpath, stored.size, late_policy="store_only", produced=True,
                           node=files.node_name, sha256=hashlib.sha256(buf.getvalue()).hexdigest())
    return OutgoingObject(kind, header.sop_instance_uid, header.sop_class_uid, relpath)


def listed(obj: OutgoingObject) -> dict[str, str]:
    """How a job's result lists a stored object."""
    return {"kind": obj.kind, "sop_instance_uid": obj.sop_instance_uid, "series_uid": obj.relpath.split("/")[1]}
