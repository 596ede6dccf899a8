"""Checks on a received C-STORE dataset, done on the encoded bytes before anything is stored.

The whole dataset is parsed once (pixel data included, so that a truncated transfer is
detected) but never decoded or re-encoded: the stored file holds the bytes as received.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from io import BytesIO
from typing import Any

from pydicom import dcmread
from pydicom.errors import InvalidDicomError
from pydicom.filereader import data_element_generator

from node.store.uids import is_valid_uid

# C-STORE failure statuses (PS3.4 B.2.3) used by the node.
STATUS_SUCCESS = 0x0000
STATUS_OUT_OF_RESOURCES = 0xA700
STATUS_DATASET_MISMATCH = 0xA900  # dataset does not match SOP class
STATUS_CANNOT_UNDERSTAND = 0xC000
STATUS_INVALID_UID = 0xC001  # our sub-code in the "cannot understand" range

_SERIES_KEYS = ("Modality", "SeriesDescription", "ProtocolName", "SequenceName", "SeriesNumber")
_IMAGE_KEYS = ("InstanceNumber", "Rows", "Columns", "NumberOfFrames", "FrameOfReferenceUID")


class Refusal(Exception):
    """The instance is refused with a DICOM status and a reason (logged, not sent as text)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


@dataclass
class InstanceHeader:
    sop_class_uid: str
    sop_instance_uid: str
    study_uid: str
    series_uid: str
    transfer_syntax_uid: str
    attrs: dict[str, Any] = field(default_factory=dict)


def _plain(value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        return [_plain(v) for v in value]
    if isinstance(value, (int, float, str)):
        return value if not isinstance(value, str) else str(value)
    try:
        return float(value)
    except (TypeError, ValueError):
        return str(value)


_WANTED = [
    "SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID", *_SERIES_KEYS, *_IMAGE_KEYS,
    "ImageType", "ImageOrientationPatient", "ImagePositionPatient", "PixelSpacing", "SliceThickness",
]
_SEQ_DELIMITER_LE = b"\xfe\xff\xdd\xe0\x00\x00\x00\x00"
_SEQ_DELIMITER_BE = b"\xff\xfe\xe0\xdd\x00\x00\x00\x00"


def _check_complete(fp: BytesIO, total: int, implicit: bool, little: bool) -> None:
    """Walk the elements after the header without loading their values; every declared
    length must fit in what was received (a short transfer is refused, not stored)."""
    delimiter = _SEQ_DELIMITER_LE if little else _SEQ_DELIMITER_BE
    buf = fp.getbuffer()
    try:
        for raw in data_element_generator(fp, implicit, little, defer_size=64):
            if raw.length == 0xFFFFFFFF:
                end = fp.tell()
                if bytes(buf[end - 8:end]) != delimiter:
                    raise Refusal(STATUS_CANNOT_UNDERSTAND, f"element {raw.tag} has no sequence delimiter (truncated)")
            elif raw.value_tell + raw.length > total:
                raise Refusal(STATUS_CANNOT_UNDERSTAND, f"element {raw.tag} is truncated")
    except EOFError as exc:
        raise Refusal(STATUS_CANNOT_UNDERSTAND, f"dataset is truncated: {exc}") from None
    finally:
        del buf


def parse_header(encoded_with_meta: bytes, *, affected_sop_class: str, affected_sop_instance: str,
                 transfer_syntax: str) -> InstanceHeader:
    """Validate a received dataset (file meta + dataset bytes) and pull out what indexing needs."""
    fp = BytesIO(encoded_with_meta)
    try:
        ds = dcmread(fp, stop_before_pixels=True, specific_tags=_WANTED)
        tsx = ds.file_meta.TransferSyntaxUID
        _check_complete(fp, len(encoded_with_meta), tsx.is_implicit_VR, tsx.is_little_endian)
        values = {k: ds.get(k) for k in ("SOPInstanceUID", "SOPClassUID", "StudyInstanceUID", "SeriesInstanceUID")}
    except Refusal:
        raise
    except (InvalidDicomError, EOFError, ValueError, OSError, TypeError, KeyError, AttributeError) as exc:
        raise Refusal(STATUS_CANNOT_UNDERSTAND, f"dataset could not be parsed (truncated or malformed): {exc}") from None

    for name, v in values.items():
        if v is None or str(v) == "":
            raise Refusal(STATUS_CANNOT_UNDERSTAND, f"{name} missing")
    uids = {k: str(v) for k, v in values.items()}
    for name, v in uids.items():
        if not is_valid_uid(v):
            raise Refusal(STATUS_INVALID_UID, f"{name} is not a valid UID")
    if uids["SOPInstanceUID"] != affected_sop_instance:
        raise Refusal(STATUS_DATASET_MISMATCH, "SOPInstanceUID differs from the request's Affected SOP Instance UID")
    if uids["SOPClassUID"] != affected_sop_class:
        raise Refusal(STATUS_DATASET_MISMATCH, "SOPClassUID differs from the request's Affected SOP Class UID")

    attrs: dict[str, Any] = {}
    for key in _WANTED[4:]:
        if key in ds:
            value = ds[key].value
            attrs[key] = [str(v) for v in value] if key == "ImageType" and ds[key].VM > 1 else _plain(value)
    if isinstance(attrs.get("ImageType"), str):
        attrs["ImageType"] = [attrs["ImageType"]]
    return InstanceHeader(
        sop_class_uid=uids["SOPClassUID"],
        sop_instance_uid=uids["SOPInstanceUID"],
        study_uid=uids["StudyInstanceUID"],
        series_uid=uids["SeriesInstanceUID"],
        transfer_syntax_uid=transfer_syntax,
        attrs=attrs,
    )
