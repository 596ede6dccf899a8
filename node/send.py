"""A Storage SCU (pynetdicom) for `lgenode send` / `lgenode echo` and for tests."""

from __future__ import annotations

import ssl

from dataclasses import dataclass, field
from pathlib import Path

from pydicom import dcmread
from pydicom.errors import InvalidDicomError
from pynetdicom import AE
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

from node.deliver.association import open_association


@dataclass
class SendReport:
    ok: int = 0
    failed: int = 0
    skipped: int = 0
    failures: list[tuple[str, str]] = field(default_factory=list)
    statuses: dict[str, int] = field(default_factory=dict)  # SOPInstanceUID -> status
    error: str | None = None  # why nothing could be sent (no connection, association rejected)


def send_files(files: list[Path], *, host: str, port: int, called_ae: str, calling_ae: str = "LGESEND",
               progress: bool = False, tls: ssl.SSLContext | None = None) -> SendReport:
    """Send files over one association, proposing each file's own transfer syntax (no re-encoding).
    ``tls``: a client context (``node.security.tls.client_context``) for a DICOM TLS peer."""
    from tqdm import tqdm

    report = SendReport()
    headers = []
    for f in files:
        try:
            ds = dcmread(f, stop_before_pixels=True, specific_tags=["SOPClassUID", "SOPInstanceUID"])
            headers.append((f, str(ds.file_meta.MediaStorageSOPClassUID), str(ds.file_meta.TransferSyntaxUID)))
        except (InvalidDicomError, AttributeError, OSError):
            report.skipped += 1
    contexts = sorted({(c, t) for _, c, t in headers})
    ae = AE(ae_title=calling_ae)
    for c, t in contexts[:127]:
        ae.add_requested_context(c, [t])
    assoc, failure = open_association(ae, host, port, called_ae, tls_args=_tls_args(tls, host))
    if assoc is None or failure is not None:
        report.error = failure
        for f, _, _ in headers:
            report.failed += 1
            report.failures.append((str(f), failure or "association not established"))
        return report
    try:
        for f, _, _ in tqdm(headers, disable=not progress, unit="img", desc="C-STORE"):
            ds = dcmread(f)
            status = assoc.send_c_store(ds)
            code = int(getattr(status, "Status", -1)) if status else -1
            report.statuses[str(ds.SOPInstanceUID)] = code
            if code in (0x0000, 0xB000, 0xB007, 0xB006):
                report.ok += 1
            else:
                report.failed += 1
                report.failures.append((str(f), "no response" if code == -1 else f"status 0x{code:04X}"))
    finally:
        assoc.release()
    return report


def _tls_args(tls: ssl.SSLContext | None, host: str) -> tuple[ssl.SSLContext, str] | None:
    return (tls, host) if tls is not None else None


def echo(*, host: str, port: int, called_ae: str, calling_ae: str = "LGESEND",
         tls: ssl.SSLContext | None = None) -> str:
    ae = AE(ae_title=calling_ae)
    ae.add_requested_context(Verification)
    assoc, failure = open_association(ae, host, port, called_ae, tls_args=_tls_args(tls, host))
    if assoc is None or failure is not None:
        return failure or "association not established"
    try:
        status = assoc.send_c_echo()
        return "Success" if status and status.Status == 0 else f"status {getattr(status, 'Status', None)}"
    finally:
        assoc.release()


__all__ = ["SendReport", "send_files", "echo"]
