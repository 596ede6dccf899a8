"""Checks on a received C-STORE dataset, done on the encoded bytes before anything is stored.

Every top-level element is walked once (pixel data included, so that a truncated transfer is
detected); only the few values indexing needs are decoded, and nothing is re-encoded: the
stored file holds the bytes as received.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from io import BytesIO
from typing import Any

from pydicom.charset import convert_encodings, default_encoding
from pydicom.dataelem import convert_raw_data_element
from pydicom.datadict import tag_for_keyword
from pydicom.filereader import data_element_generator, read_preamble
from pydicom.uid import UID
from pydicom.valuerep import VR

from node.receive.contexts import IMAGE_SOP_CLASSES
from node.store.uids import is_valid_uid

# C-STORE failure statuses (PS3.4 B.2.3) used by the node.
STATUS_SUCCESS = 0x0000
STATUS_OUT_OF_RESOURCES = 0xA700
STATUS_DATASET_MISMATCH = 0xA900  # dataset does not match SOP class
STATUS_CANNOT_UNDERSTAND = 0xC000
STATUS_INVALID_UID = 0xC001  # our sub-code in the "cannot understand" range

_SERIES_KEYS = ("Modality", "SeriesDescription", "ProtocolName", "SequenceName", "SeriesNumber")
_IMAGE_KEYS = ("InstanceNumber", "Rows", "Columns", "NumberOfFrames", "FrameOfReferenceUID", "SamplesPerPixel",
               "BitsAllocated")


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
# Tags kept while walking the dataset (values decoded only for these); the character set is
# needed to decode the text ones.
_CHARSET_TAG = 0x00080005
_KEYWORDS: dict[int, str] = {int(tag_for_keyword(k)): k for k in _WANTED}  # type: ignore[arg-type]
_WANTED_TAGS = frozenset([_CHARSET_TAG, *_KEYWORDS])
_PIXEL_DATA_TAG = 0x7FE00010
_PIXEL_TAGS = frozenset([_PIXEL_DATA_TAG, 0x7FE00008, 0x7FE00009])  # Pixel Data, Float, Double Float
_SEQ_DELIMITER_LE = b"\xfe\xff\xdd\xe0\x00\x00\x00\x00"
_SEQ_DELIMITER_BE = b"\xff\xfe\xe0\xdd\x00\x00\x00\x00"
# Values longer than this are skipped (seek), not read: only the length is checked.
_DEFER_BYTES = 1024
# The VRs an explicit-VR encoding may carry (PS3.5 6.2); two characters each.
_EXPLICIT_VRS = frozenset(v.value for v in VR if len(v.value) == 2)


def _check_vr_encoding(data: bytes, implicit: bool) -> None:
    """Refuse a dataset whose first element is not encoded the way the transfer syntax says.

    Explicit VR bytes read as implicit (or the reverse) are mis-parsed, not rejected, by a
    plain walk: implicit bytes read as explicit can even look complete and be stored as a file
    no reader can parse (DCMTK's storescp aborts the association here). The first element
    tells: bytes 4-5 are a VR in explicit VR and the low half of a length in implicit VR.
    """
    if len(data) < 8:
        return  # too short for an element: _walk refuses it
    looks_explicit = data[4:6].decode("latin-1") in _EXPLICIT_VRS
    if not implicit and not looks_explicit:
        raise Refusal(STATUS_CANNOT_UNDERSTAND, "dataset is not explicit VR although the presentation context's "
                                                 "transfer syntax is (implicit VR bytes? transfer syntax mismatch)")
    if implicit and looks_explicit:
        raise Refusal(STATUS_CANNOT_UNDERSTAND, "dataset looks explicit VR although the presentation context's "
                                                 "transfer syntax is implicit VR (transfer syntax mismatch)")


def _walk(data: bytes, implicit: bool, little: bool) -> tuple[dict[int, Any], bool, int | None]:
    """Walk every top-level element once, reading values only for ``_WANTED_TAGS``.

    Each element must lie wholly inside what was received: a declared length past the end,
    an undefined-length value without its delimiter, or an element header cut short is a
    truncated transfer and refused. (pydicom's readers tolerate these, with a warning, so
    the check cannot be left to them.) Returns the wanted raw elements, whether the dataset has
    pixel data, and the length of native (not encapsulated) Pixel Data.
    """
    delimiter = _SEQ_DELIMITER_LE if little else _SEQ_DELIMITER_BE
    total = len(data)
    fp = BytesIO(data)
    wanted: dict[int, Any] = {}
    has_pixels = False
    native_pixel_bytes: int | None = None
    end = 0  # where the last complete element ended
    try:
        for elem in data_element_generator(fp, implicit, little, defer_size=_DEFER_BYTES):
            # Undefined-length sequences come back parsed (DataElement), everything else raw.
            if getattr(elem, "is_undefined_length", False) or getattr(elem, "length", None) == 0xFFFFFFFF:
                end = fp.tell()
                if end > total or data[end - 8:end] != delimiter:
                    raise Refusal(STATUS_CANNOT_UNDERSTAND, f"element {elem.tag} has no sequence delimiter (truncated)")
            else:
                end = elem.value_tell + elem.length
                if end > total:
                    raise Refusal(STATUS_CANNOT_UNDERSTAND, f"element {elem.tag} is truncated")
            if not implicit and elem.VR not in _EXPLICIT_VRS:
                raise Refusal(STATUS_CANNOT_UNDERSTAND, f"element {elem.tag} has no valid VR ({elem.VR!r})")
            tag = int(elem.tag)
            if tag in _WANTED_TAGS:
                wanted[tag] = elem
            elif tag in _PIXEL_TAGS:
                has_pixels = True
                if tag == _PIXEL_DATA_TAG and getattr(elem, "length", 0xFFFFFFFF) != 0xFFFFFFFF:
                    native_pixel_bytes = int(elem.length)
    except Refusal:
        raise
    except Exception as exc:  # struct.error, EOFError, ValueError...: malformed or cut short
        raise Refusal(STATUS_CANNOT_UNDERSTAND, f"dataset could not be parsed (truncated or malformed): {exc}") from None
    if end != total:
        # The generator stops quietly on a partial element header (1-11 bytes left).
        raise Refusal(STATUS_CANNOT_UNDERSTAND, f"dataset ends inside an element header at byte {end} of {total}")
    return wanted, has_pixels, native_pixel_bytes


def _native_pixel_bytes_needed(elems: dict[str, Any]) -> int | None:
    """Bytes that native Pixel Data must hold for Rows x Columns x Samples x Frames at
    BitsAllocated (None when an attribute is missing or unusable: nothing to check against)."""
    try:
        rows, cols = int(elems["Rows"].value), int(elems["Columns"].value)
        bits = int(elems["BitsAllocated"].value)
        spp = int(elems["SamplesPerPixel"].value) if "SamplesPerPixel" in elems else 1
        frames = int(elems["NumberOfFrames"].value) if "NumberOfFrames" in elems else 1
    except (KeyError, TypeError, ValueError):
        return None
    if min(rows, cols, bits, spp, frames) <= 0:
        return None
    return -(-rows * cols * spp * frames * bits // 8)  # ceil: 1-bit data is packed


_UID_KEYS = ("SOPInstanceUID", "SOPClassUID", "StudyInstanceUID", "SeriesInstanceUID")


def _uid_as_sent(elem: Any) -> str | None:
    value = getattr(elem, "value", None)
    if not isinstance(value, bytes):
        return None  # deferred: longer than any UID
    text = value.decode("latin-1")
    # One padding byte to an even length: NUL as PS3.5 says, or a space as some writers do.
    return text[:-1] if len(value) % 2 == 0 and text[-1:] in ("\x00", " ") else text


def find_dataset_offset(encoded_with_meta: bytes) -> int:
    """Offset of the dataset in a DICOM file's bytes (after preamble, prefix and file meta)."""
    fp = BytesIO(encoded_with_meta)
    try:
        read_preamble(fp, False)
        # File meta is always explicit VR little endian; stop (rewound) at the first non-group-2 element.
        for _ in data_element_generator(fp, False, True, stop_when=lambda tag, vr, length: tag >> 16 != 2):
            pass
    except Exception as exc:
        raise Refusal(STATUS_CANNOT_UNDERSTAND, f"file meta could not be parsed: {exc}") from None
    return fp.tell()


def parse_header(encoded_with_meta: bytes, *, affected_sop_class: str, affected_sop_instance: str,
                 transfer_syntax: str, dataset_offset: int | None = None) -> InstanceHeader:
    """Validate a received dataset (file meta + dataset bytes) and pull out what indexing needs.

    ``dataset_offset``: where the dataset starts, when the caller knows it (the SCP built the
    file meta itself); otherwise the file meta is parsed to find it. ``transfer_syntax`` is
    the one the dataset is encoded in (the presentation context's).
    """
    offset = find_dataset_offset(encoded_with_meta) if dataset_offset is None else dataset_offset
    tsx = UID(transfer_syntax)
    data = encoded_with_meta[offset:]
    if tsx.is_deflated:
        try:
            data = zlib.decompress(data, -zlib.MAX_WBITS)
        except zlib.error as exc:
            raise Refusal(STATUS_CANNOT_UNDERSTAND, f"deflated dataset could not be inflated: {exc}") from None
    _check_vr_encoding(data, tsx.is_implicit_VR)
    raw, has_pixels, native_pixel_bytes = _walk(data, tsx.is_implicit_VR, tsx.is_little_endian)
    raw_uids = {_KEYWORDS[tag]: r for tag, r in raw.items() if _KEYWORDS.get(tag) in _UID_KEYS}
    for name, r in raw_uids.items():
        if r.value is None and r.length:  # not read by the walk: far longer than any UID
            raise Refusal(STATUS_INVALID_UID, f"{name} is not a valid UID ({r.length} bytes)")
    try:
        # Converted element by element (not through a Dataset, whose keyword and character
        # set look-ups per access were most of the parse time).
        encoding: str | list[str] = default_encoding
        charset = raw.pop(_CHARSET_TAG, None)
        if charset is not None:
            encoding = convert_encodings(convert_raw_data_element(charset).value)
        elems = {_KEYWORDS[tag]: convert_raw_data_element(r, encoding=encoding) for tag, r in raw.items()}
    except Exception as exc:
        raise Refusal(STATUS_CANNOT_UNDERSTAND, f"dataset could not be parsed (malformed value): {exc}") from None
    values = {k: elems[k].value if k in elems else None
              for k in _UID_KEYS}

    for name, v in values.items():
        if v is None or str(v) == "":
            raise Refusal(STATUS_CANNOT_UNDERSTAND, f"{name} missing")
    uids = {k: str(v) for k, v in values.items()}
    for name, v in uids.items():
        # The bytes as sent, not pydicom's value: its UID type strips surrounding whitespace,
        # so "1.2.3\n" would pass as "1.2.3". Only the padding byte is allowed.
        if not is_valid_uid(v) or _uid_as_sent(raw_uids[name]) != v:
            raise Refusal(STATUS_INVALID_UID, f"{name} is not a valid UID")
    if uids["SOPInstanceUID"] != affected_sop_instance:
        raise Refusal(STATUS_DATASET_MISMATCH, "SOPInstanceUID differs from the request's Affected SOP Instance UID")
    if uids["SOPClassUID"] != affected_sop_class:
        raise Refusal(STATUS_DATASET_MISMATCH, "SOPClassUID differs from the request's Affected SOP Class UID")

    if uids["SOPClassUID"] in IMAGE_SOP_CLASSES and not has_pixels:
        # Pixel Data is mandatory for these classes; its absence means the transfer was cut
        # at an element boundary (or the object is not what its SOP class says).
        raise Refusal(STATUS_DATASET_MISMATCH, "image without Pixel Data (truncated, or wrong SOP class)")
    if native_pixel_bytes is not None and not tsx.is_encapsulated:
        # Complete elements can still hold too few pixels: an image cut short and then
        # re-encoded (a truncated multipart part read by a tolerant parser) has consistent
        # element lengths. No reader could use it.
        needed = _native_pixel_bytes_needed(elems)
        if needed is not None and native_pixel_bytes < needed:
            raise Refusal(STATUS_CANNOT_UNDERSTAND, f"Pixel Data holds {native_pixel_bytes} bytes; Rows, Columns, "
                                                     f"SamplesPerPixel, NumberOfFrames and BitsAllocated need {needed} "
                                                     "(truncated)")

    attrs: dict[str, Any] = {}
    try:
        for key in _WANTED[4:]:
            if key in elems:
                elem = elems[key]
                value = elem.value
                attrs[key] = [str(v) for v in value] if key == "ImageType" and elem.VM > 1 else _plain(value)
    except Exception as exc:
        raise Refusal(STATUS_CANNOT_UNDERSTAND, f"dataset could not be parsed (malformed value): {exc}") from None
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
