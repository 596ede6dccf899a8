"""C-STORE SCU (pynetdicom): send a list of objects to one AE over one association.

One presentation context is requested per SOP class among the objects (SEG, Comprehensive 3D
SR, Encapsulated PDF, MR, ...), offering the object's own transfer syntax first, then explicit
and implicit VR little endian, so any DICOM peer can accept at least the uncompressed ones.
Every object gets a `DeliveryResult`: a rejected association or a rejected context fails the
objects concerned without raising, so the caller can record per-object state and retry only
what failed. Warning statuses (e.g. 0xB000 coercion) count as stored.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import pydicom
from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom import AE
from pynetdicom.status import code_to_category

from node.deliver.association import open_association
from node.deliver.destinations import CStoreDestination, DeliveryResult

__all__ = ["send_cstore", "load_objects"]

log = logging.getLogger(__name__)

_MAX_CONTEXTS = 128  # PS3.8: presentation context IDs are odd numbers 1..255


def load_objects(objects: Sequence[Dataset | str | Path]) -> list[Dataset]:
    """Datasets as given; paths are read (whole file, pixel data included)."""
    return [o if isinstance(o, Dataset) else pydicom.dcmread(o) for o in objects]


def _transfer_syntax(ds: Dataset) -> str:
    meta = getattr(ds, "file_meta", None)
    ts = meta.get("TransferSyntaxUID") if meta is not None else None
    return str(ts) if ts else str(ExplicitVRLittleEndian)


def _fail_all(datasets: Sequence[Dataset], detail: str) -> list[DeliveryResult]:
    return [DeliveryResult(str(ds.SOPInstanceUID), str(ds.SOPClassUID), False, None, detail)
            for ds in datasets]


def send_cstore(objects: Sequence[Dataset | str | Path], dest: CStoreDestination) -> list[DeliveryResult]:
    """Send ``objects`` to ``dest``; one result per object, in order."""
    datasets = load_objects(objects)
    if not datasets:
        return []
    ae = AE(ae_title=dest.calling_ae_title)
    ae.acse_timeout = dest.acse_timeout_s
    ae.dimse_timeout = dest.dimse_timeout_s
    ae.network_timeout = dest.network_timeout_s
    ae.maximum_pdu_size = dest.max_pdu
    contexts: dict[str, list[str]] = {}
    for ds in datasets:
        syntaxes = contexts.setdefault(str(ds.SOPClassUID), [])
        for ts in (_transfer_syntax(ds), str(ExplicitVRLittleEndian), str(ImplicitVRLittleEndian)):
            if ts not in syntaxes:
                syntaxes.append(ts)
    if len(contexts) > _MAX_CONTEXTS:
        raise ValueError(f"{len(contexts)} SOP classes: more than one association can negotiate")
    for sop_class, syntaxes in contexts.items():
        ae.add_requested_context(sop_class, syntaxes)

    tls_args = (dest.tls_context, dest.host) if dest.tls_context is not None else None
    assoc, failure = open_association(ae, dest.host, dest.port, dest.ae_title, tls_args=tls_args)
    if assoc is None or failure is not None:
        # Refused connection, A-ASSOCIATE-RJ (with its reason) or abort: each said as such.
        log.warning("C-STORE to %s failed: %s", dest.label, failure)
        return _fail_all(datasets, failure or "association not established")

    results: list[DeliveryResult] = []
    try:
        for ds in datasets:
            uid, cls = str(ds.SOPInstanceUID), str(ds.SOPClassUID)
            if not assoc.is_established:
                results.append(DeliveryResult(uid, cls, False, None, "association lost"))
                continue
            try:
                status = assoc.send_c_store(ds)
            except ValueError as exc:  # no accepted presentation context for this object
                results.append(DeliveryResult(uid, cls, False, None, f"not sent: {exc}"))
                continue
            code = int(status.Status) if status is not None and "Status" in status else None
            if code is None:
                results.append(DeliveryResult(uid, cls, False, None,
                                              "no response (timeout or abort)"))
                continue
            category = code_to_category(code)
            ok = category in ("Success", "Warning")
            comment = str(status.get("ErrorComment", "") or "")
            results.append(DeliveryResult(uid, cls, ok, code,
                                          f"{category} 0x{code:04X} {comment}".strip(),
                                          warning=category == "Warning"))
    finally:
        if assoc.is_established:
            assoc.release()
    n_ok = sum(r.ok for r in results)
    log.info("C-STORE to %s: %d/%d objects stored", dest.label, n_ok, len(results))
    return results
