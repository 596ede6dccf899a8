"""A generated corpus of malformed and hostile C-STORE requests, each with its expected outcome.

Everything is built in memory from pydicom's MR_small (and an SR built here), with fresh UIDs per
case so each request can be found in the node's log. The expected status comes from how the case
was built (what was cut, which UID was spoiled), never from the node's own code:

===========================  ======================================================  ==========
category                     how                                                     expected
===========================  ======================================================  ==========
truncated                    cut inside an element header or value, or at an         0xC000 /
                             element boundary before the Pixel Data                  0xA900
garbage                      random bytes, zeros, text, a whole file as a dataset    0xC000
wrong SOP class              dataset's SOP class/instance differ from the request    0xA900
missing UID                  a required UID absent or empty                          0xC000
invalid UID                  malformed, traversal, whitespace, non-ASCII, overlong   0xC001
overlong request UID         Affected SOP Instance UID over 64 characters            0xC001
huge length                  a declared length past the end; undefined lengths       0xC000
                             without their delimiter
bad VR                       VR bytes that are no VR                                 0xC000
transfer-syntax mismatch     implicit/explicit/big-endian/deflated bytes on another  0xC000
                             context's transfer syntax
duplicate, other content     a stored SOP Instance UID re-sent with other content    0x0000,
                                                                                     first kept
valid (controls)             well-formed instances in several transfer syntaxes      0x0000
===========================  ======================================================  ==========
"""

from __future__ import annotations

import random
import struct
import warnings
import zlib
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path

from pydicom import dcmread
from pydicom.data import get_testdata_file
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filereader import data_element_generator
from pydicom.tag import Tag
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    RLELossless,
    generate_uid,
)
from pynetdicom.dsutils import encode

MR = "1.2.840.10008.5.1.4.1.1.4"
SR = "1.2.840.10008.5.1.4.1.1.88.33"  # Comprehensive SR
CT = "1.2.840.10008.5.1.4.1.1.2"  # not accepted by the node: only ever inside a dataset
PREFIX = "1.2.826.0.1.3680043.10.1013."  # UIDs of this corpus

OK, CANNOT_UNDERSTAND, INVALID_UID, MISMATCH = 0x0000, 0xC000, 0xC001, 0xA900

# Presentation contexts the corpus needs: (SOP class, transfer syntax).
CONTEXTS: list[tuple[str, str]] = [
    (MR, ExplicitVRLittleEndian), (MR, ImplicitVRLittleEndian), (MR, ExplicitVRBigEndian),
    (MR, DeflatedExplicitVRLittleEndian), (MR, RLELossless), (MR, JPEG2000Lossless),
    (SR, ExplicitVRLittleEndian), (SR, ImplicitVRLittleEndian),
]

_UID_TAGS = {"SOPClassUID": 0x00080016, "SOPInstanceUID": 0x00080018, "StudyInstanceUID": 0x0020000D,
             "SeriesInstanceUID": 0x0020000E}


@dataclass
class Case:
    name: str
    category: str
    data: bytes  # the dataset bytes, exactly as sent
    sop_class: str  # the request's Affected SOP Class UID (and the context's)
    sop_instance: str  # the request's Affected SOP Instance UID
    transfer_syntax: str  # the context's
    expected: int
    stored_uid: str | None = None  # for expected success: the instance that must be in the store
    same_as: str | None = None  # a duplicate: the case whose bytes must stay stored


def _uid() -> str:
    return generate_uid(prefix=PREFIX)


def mr(**changes: object) -> Dataset:
    ds = dcmread(get_testdata_file("MR_small.dcm"))
    if (0xFFFC, 0xFFFC) in ds:
        del ds[0xFFFC, 0xFFFC]
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID = _uid(), _uid(), _uid()
    for k, v in changes.items():
        setattr(ds, k, v)
    return ds


def sr() -> Dataset:
    ds = Dataset()
    ds.SOPClassUID = SR
    ds.SOPInstanceUID, ds.StudyInstanceUID, ds.SeriesInstanceUID = _uid(), _uid(), _uid()
    ds.Modality = "SR"
    ds.SeriesNumber = 99
    ds.InstanceNumber = 1
    ds.ValueType = "CONTAINER"
    ds.ContinuityOfContent = "SEPARATE"
    return ds


def compressed(name: str) -> Dataset:
    ds = dcmread(get_testdata_file(name))
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID = _uid(), _uid(), _uid()
    return ds


def encoded(ds: Dataset, ts: str) -> bytes:
    implicit = ts == ImplicitVRLittleEndian
    little = ts != ExplicitVRBigEndian
    data = encode(ds, implicit, little)
    assert data is not None
    if ts == DeflatedExplicitVRLittleEndian:
        c = zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, -zlib.MAX_WBITS)
        data = c.compress(data) + c.flush()
    return data


def _case(name: str, category: str, ds: Dataset, ts: str, expected: int, *, data: bytes | None = None,
          sop_class: str | None = None, sop_instance: str | None = None) -> Case:
    return Case(name, category, encoded(ds, ts) if data is None else data, sop_class or MR,
                sop_instance or str(ds.SOPInstanceUID), ts, expected,
                stored_uid=str(ds.SOPInstanceUID) if expected == OK else None)


def _elements(data: bytes, implicit: bool, little: bool = True) -> list[tuple[int, int, int, int]]:
    """(tag, header start, value start, value end) of each top-level element."""
    fp = BytesIO(data)
    out = []
    start = 0
    for elem in data_element_generator(fp, implicit, little, defer_size=64):
        value_start = elem.value_tell
        end = fp.tell() if getattr(elem, "length", 0) == 0xFFFFFFFF else value_start + elem.length
        out.append((int(elem.tag), start, value_start, end))
        start = end
    return out


# -- categories --------------------------------------------------------------------------------

def truncated() -> list[Case]:
    cases = []
    for ts in (ExplicitVRLittleEndian, ImplicitVRLittleEndian):
        ds = mr()
        data = encoded(ds, ts)
        elems = _elements(data, ts == ImplicitVRLittleEndian)
        uid_end = max(end for tag, _, _, end in elems if tag in _UID_TAGS.values())
        for i, (tag, start, vstart, end) in enumerate(elems):
            # Inside the header of every 3rd element, inside the value of every other one.
            if i % 3 == 0 and start > 0:
                cut = start + 3
                cases.append(Case(f"truncated in header of {Tag(tag)} ({ts.name})", "truncated", data[:cut], MR,
                                  ds.SOPInstanceUID, ts, CANNOT_UNDERSTAND))
            if i % 2 == 1 and end - vstart > 1:
                cut = vstart + (end - vstart) // 2
                cases.append(Case(f"truncated in value of {Tag(tag)} ({ts.name})", "truncated", data[:cut], MR,
                                  ds.SOPInstanceUID, ts, CANNOT_UNDERSTAND))
            # Cut exactly between elements: no element is cut, so what is missing decides.
            if i % 4 == 2 and end < len(data):
                cases.append(Case(f"truncated after {Tag(tag)} ({ts.name})", "truncated", data[:end], MR,
                                  ds.SOPInstanceUID, ts, MISMATCH if end >= uid_end else CANNOT_UNDERSTAND))
    for name, ts in (("MR_small_RLE.dcm", RLELossless), ("MR_small_jp2klossless.dcm", JPEG2000Lossless)):
        ds = compressed(name)
        data = encoded(ds, ts)
        for cut in (1, 7, 100, len(data) // 2, len(data) - 9):  # into the encapsulated fragments
            cases.append(Case(f"{ts.name} cut {cut} bytes short", "truncated", data[:-cut], MR, ds.SOPInstanceUID,
                              ts, CANNOT_UNDERSTAND))
    return cases


def garbage(rng: random.Random) -> list[Case]:
    cases = []
    blobs: list[tuple[str, bytes]] = [("no data set at all", b""), ("one byte", b"\x08"), ("seven bytes", b"\x08\x00\x16\x00UI\x1a")]
    for n in (8, 16, 64, 255, 1024, 4096, 40000):
        blobs.append((f"{n} random bytes", rng.randbytes(n)))
        blobs.append((f"{n} zero bytes", bytes(n)))
        blobs.append((f"{n} 0xFF bytes", b"\xff" * n))
    blobs.append(("text", b"GET / HTTP/1.1\r\nHost: lgenode\r\n\r\n" * 4))
    blobs.append(("JSON", b'{"SOPInstanceUID": "1.2.3"}' * 3))
    blobs.append(("DICM preamble and garbage", bytes(128) + b"DICM" + rng.randbytes(300)))
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = MR, _uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    whole = mr()
    whole.file_meta = meta
    buf = BytesIO()
    whole.save_as(buf, enforce_file_format=True)
    blobs.append(("a whole file (preamble + meta) as the dataset", buf.getvalue()))
    for label, blob in blobs:
        for ts in (ExplicitVRLittleEndian, ImplicitVRLittleEndian):
            cases.append(Case(f"garbage: {label} ({ts.name})", "garbage", blob, MR, _uid(), ts, CANNOT_UNDERSTAND))
    for n in (3, 500):
        cases.append(Case(f"garbage: {n} random bytes (Deflated)", "garbage", rng.randbytes(n), MR, _uid(),
                          DeflatedExplicitVRLittleEndian, CANNOT_UNDERSTAND))
    return cases


def wrong_sop_class() -> list[Case]:
    cases = []
    for ts in (ExplicitVRLittleEndian, ImplicitVRLittleEndian):
        for cls in (CT, SR, "1.2.840.10008.5.1.4.1.1.7", "1.2.840.10008.5.1.4.1.1.66.4", "1.2.840.10008.5.1.4.1.1.4.1"):
            ds = mr(SOPClassUID=cls)
            cases.append(_case(f"dataset class {cls} on an MR request ({ts.name})", "wrong SOP class", ds, ts,
                               MISMATCH, sop_class=MR))
        ds = mr()  # an MR dataset sent on the SR context, as an SR
        cases.append(_case(f"MR dataset on an SR request ({ts.name})", "wrong SOP class", ds, ts, MISMATCH,
                           sop_class=SR))
        ds = sr()
        cases.append(_case(f"SR dataset on an MR request ({ts.name})", "wrong SOP class", ds, ts, MISMATCH,
                           sop_class=MR))
        for _ in range(3):
            ds = mr()
            cases.append(_case(f"request instance UID differs from the dataset's ({ts.name})", "wrong SOP class", ds,
                               ts, MISMATCH, sop_instance=_uid()))
        ds = mr()
        del ds.PixelData
        cases.append(_case(f"MR image without Pixel Data ({ts.name})", "wrong SOP class", ds, ts, MISMATCH))
    return cases


def missing_uids() -> list[Case]:
    cases = []
    for ts in (ExplicitVRLittleEndian, ImplicitVRLittleEndian):
        for kw in _UID_TAGS:
            ds = mr()
            sop = str(ds.SOPInstanceUID)
            del ds[kw]
            cases.append(_case(f"{kw} missing ({ts.name})", "missing UID", ds, ts, CANNOT_UNDERSTAND, sop_instance=sop))
            ds = mr()
            sop = str(ds.SOPInstanceUID)
            _set_raw(ds, _UID_TAGS[kw], b"", ts)
            cases.append(_case(f"{kw} empty ({ts.name})", "missing UID", ds, ts, CANNOT_UNDERSTAND, sop_instance=sop))
        ds = sr()
        sop = str(ds.SOPInstanceUID)
        del ds.StudyInstanceUID
        cases.append(_case(f"SR without StudyInstanceUID ({ts.name})", "missing UID", ds, ts, CANNOT_UNDERSTAND,
                           sop_class=SR, sop_instance=sop))
    return cases


_BAD_UIDS: list[tuple[str, bytes]] = [
    ("leading zero", b"1.2.03.4"), ("empty component", b"1..2.3"), ("trailing dot", b"1.2.3."),
    ("leading dot", b".1.2.3"), ("letters", b"1.2.abc.4"), ("path traversal", b"../../etc/passwd"),
    ("slash", b"1.2/3.4"), ("trailing newline", b"1.2.3.4\n"), ("leading space", b" 1.2.3.4"),
    ("inner space", b"1.2. 3.4"), ("tab", b"1.2.3\t4"), ("negative", b"1.2.-3.4"),
    ("non-ASCII digits", "１.２.３".encode("utf-8")), ("65 characters", b"1." + b"2" * 63),
    ("2000 characters", b"1." + b"2" * 1998), ("NUL inside", b"1.2\x003.4"), ("single component", b"12345"),
]


def invalid_uids() -> list[Case]:
    cases = []
    for label, value in _BAD_UIDS:
        for kw in _UID_TAGS:
            ts = ExplicitVRLittleEndian if len(cases) % 2 == 0 else ImplicitVRLittleEndian
            ds = mr()
            sop = str(ds.SOPInstanceUID)  # the request keeps a valid UID: the dataset's is spoiled
            data = _with_uid_bytes(ds, kw, value, ts)
            cases.append(_case(f"{kw} {label} ({ts.name})", "invalid UID", ds, ts, INVALID_UID, data=data,
                               sop_instance=sop))
    return cases


def overlong_request_uid() -> list[Case]:
    cases = []
    for n in (65, 66, 100, 200, 1000):
        ds = mr()
        long_uid = "1.2." + "7" * (n - 4)
        data = _with_uid_bytes(ds, "SOPInstanceUID", long_uid.encode(), ExplicitVRLittleEndian)
        cases.append(_case(f"Affected SOP Instance UID of {n} characters", "overlong request UID", ds,
                           ExplicitVRLittleEndian, INVALID_UID, data=data, sop_instance=long_uid))
    return cases


def huge_lengths() -> list[Case]:
    cases = []
    ds = mr()
    data = encoded(ds, ExplicitVRLittleEndian)
    elems = _elements(data, False)
    for tag, start, vstart, end in elems:
        vr = data[start + 4:start + 6]
        if vr in (b"OB", b"OW", b"SQ", b"UN", b"UT", b"UC", b"UR", b"OF", b"OD", b"OL", b"OV"):
            pos, fmt = start + 8, "<L"
        else:
            pos, fmt = start + 6, "<H"
        for value in ((0xFFFFFFF0, 0x7FFFFFFF, len(data) - vstart + 1) if fmt == "<L"
                      else (0xFFFF,) if len(data) - vstart < 0xFFFF else ()):
            bad = data[:pos] + struct.pack(fmt, value) + data[pos + struct.calcsize(fmt):]
            cases.append(Case(f"length of {Tag(tag)} {vr.decode()} set to {value:#x}", "huge length", bad, MR,
                              ds.SOPInstanceUID, ExplicitVRLittleEndian, CANNOT_UNDERSTAND))
    # Implicit VR: every length is 32 bits.
    ds = mr()
    data = encoded(ds, ImplicitVRLittleEndian)
    for i, (tag, start, _, _) in enumerate(_elements(data, True)):
        if i % 5 == 0:
            bad = data[:start + 4] + struct.pack("<L", 0xFFFFFF00) + data[start + 8:]
            cases.append(Case(f"implicit length of {Tag(tag)} set to 0xffffff00", "huge length", bad, MR,
                              ds.SOPInstanceUID, ImplicitVRLittleEndian, CANNOT_UNDERSTAND))
    # Undefined length (a sequence or encapsulated pixel data) that never ends.
    ds = mr()
    data = encoded(ds, ExplicitVRLittleEndian)
    pixel = next(e for e in _elements(data, False) if e[0] == 0x7FE00010)
    bad = data[:pixel[1] + 8] + b"\xff\xff\xff\xff" + data[pixel[2]:]
    cases.append(Case("Pixel Data of undefined length without delimiter", "huge length", bad, MR, ds.SOPInstanceUID,
                      ExplicitVRLittleEndian, CANNOT_UNDERSTAND))
    seq = b"\x08\x00\x40\x11SQ\x00\x00\xff\xff\xff\xff" + b"\xfe\xff\x00\xe0\xff\xff\xff\xff" + b"\x08\x00\x50\x11UI\x04\x001.2\x00"
    ds = mr()
    data = encoded(ds, ExplicitVRLittleEndian)
    cases.append(Case("sequence of undefined length without delimiter at the end", "huge length", data + seq, MR,
                      ds.SOPInstanceUID, ExplicitVRLittleEndian, CANNOT_UNDERSTAND))
    return cases


def bad_vrs() -> list[Case]:
    cases = []
    for bad_vr in (b"XX", b"\x00\x00", b"ab", b"  ", b"U\x00", b"\xff\xff"):
        ds = mr()
        data = encoded(ds, ExplicitVRLittleEndian)
        elems = _elements(data, False)
        for tag, start, _, _ in (elems[0], elems[len(elems) // 3], elems[len(elems) // 2], elems[-2]):
            bad = data[:start + 4] + bad_vr + data[start + 6:]
            cases.append(Case(f"VR of {Tag(tag)} replaced by {bad_vr!r}", "bad VR", bad, MR, ds.SOPInstanceUID,
                              ExplicitVRLittleEndian, CANNOT_UNDERSTAND))
    return cases


def transfer_syntax_mismatch() -> list[Case]:
    cases = []
    pairs = [
        (ImplicitVRLittleEndian, ExplicitVRLittleEndian), (ExplicitVRLittleEndian, ImplicitVRLittleEndian),
        (ExplicitVRBigEndian, ExplicitVRLittleEndian), (ExplicitVRBigEndian, ImplicitVRLittleEndian),
        (ExplicitVRLittleEndian, ExplicitVRBigEndian), (ImplicitVRLittleEndian, ExplicitVRBigEndian),
        (ExplicitVRLittleEndian, DeflatedExplicitVRLittleEndian),
        (DeflatedExplicitVRLittleEndian, ExplicitVRLittleEndian),
        (DeflatedExplicitVRLittleEndian, ImplicitVRLittleEndian),
    ]
    for encoded_as, sent_as in pairs:
        for make in (mr, mr, sr):
            ds = make()
            cls = str(ds.SOPClassUID)
            if cls == SR and (SR, sent_as) not in CONTEXTS:
                continue
            cases.append(Case(f"{encoded_as.name} bytes on a {sent_as.name} context ({'SR' if cls == SR else 'MR'})",
                              "transfer-syntax mismatch", encoded(ds, encoded_as), cls, ds.SOPInstanceUID, sent_as,
                              CANNOT_UNDERSTAND))
    return cases


def duplicates(n: int = 12) -> list[Case]:
    """Each: an original (stored), its identical re-send, then the same UID with other content."""
    cases = []
    for i in range(n):
        ts = (ExplicitVRLittleEndian, ImplicitVRLittleEndian)[i % 2]
        first = mr(SeriesDescription="original")
        other = mr(SOPInstanceUID=first.SOPInstanceUID, StudyInstanceUID=first.StudyInstanceUID,
                   SeriesInstanceUID=first.SeriesInstanceUID, SeriesDescription=f"changed {i}")
        if i % 3 == 0:
            other.PixelData = bytes(len(first.PixelData))  # same header, other pixels
            other.SeriesDescription = "original"
        a = _case(f"duplicate {i}: original", "duplicate, other content", first, ts, OK)
        b = _case(f"duplicate {i}: identical re-send", "duplicate, other content", first, ts, OK)
        c = _case(f"duplicate {i}: other content", "duplicate, other content", other, ts, OK)
        b.same_as = c.same_as = a.name
        cases += [a, b, c]
    return cases


def valid() -> list[Case]:
    cases = []
    for ts in (ExplicitVRLittleEndian, ImplicitVRLittleEndian, ExplicitVRBigEndian, DeflatedExplicitVRLittleEndian):
        for _ in range(3):
            cases.append(_case(f"valid MR ({ts.name})", "valid", mr(), ts, OK))
    for ts in (ExplicitVRLittleEndian, ImplicitVRLittleEndian):
        ds = sr()
        cases.append(_case(f"valid SR ({ts.name})", "valid", ds, ts, OK, sop_class=SR))
        ds = mr(SpecificCharacterSet="ISO_IR 100", SeriesDescription="Séquence tardive")
        cases.append(_case(f"valid MR with a character set ({ts.name})", "valid", ds, ts, OK))
        ds = mr(SpecificCharacterSet="ISO_IR 100")
        sop = str(ds.SOPInstanceUID)
        cases.append(_case(f"StudyInstanceUID letters, with a character set ({ts.name})", "invalid UID", ds, ts,
                           INVALID_UID, data=_with_uid_bytes(ds, "StudyInstanceUID", b"1.2.abc", ts), sop_instance=sop))
    for name, ts in (("MR_small_RLE.dcm", RLELossless), ("MR_small_jp2klossless.dcm", JPEG2000Lossless)):
        cases.append(_case(f"valid MR ({ts.name})", "valid", compressed(name), ts, OK))
    return cases


def _set_raw(ds: Dataset, tag: int, value: bytes, ts: str) -> None:
    """Put bytes into an element as they are (pydicom would strip or validate a UID it is given)."""
    if len(value) % 2:
        value += b"\x00"
    ds[tag] = RawDataElement(Tag(tag), "UI", len(value), value, 0, ts == ImplicitVRLittleEndian,
                             ts != ExplicitVRBigEndian)


def series(n: int, *, description: str = "LGE PSIR SAX", size: int = 128, seed: int = 0) -> list[Dataset]:
    """One valid MR stack (parallel slices 8 mm apart, one matrix) that the LGE rules select:
    MR_small's header with smooth synthetic pixels, so no research data is needed."""
    import numpy as np

    rng = np.random.default_rng(seed)
    study, series_uid, frame = _uid(), _uid(), _uid()
    yy, xx = np.mgrid[0:size, 0:size]
    out = []
    for k in range(n):
        ds = mr(StudyInstanceUID=study, SeriesInstanceUID=series_uid)
        ring = np.exp(-((np.hypot(yy - size / 2, xx - size / 2) - size / 6) ** 2) / (size / 20) ** 2)
        img = (800 * ring + 200 * rng.random((size, size))).astype(np.uint16)
        ds.Rows = ds.Columns = size
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
        ds.PixelData = img.tobytes()
        ds.SeriesDescription = description
        ds.FrameOfReferenceUID = frame
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.ImagePositionPatient = [-100.0, -100.0, 8.0 * k]
        ds.PixelSpacing = [1.5, 1.5]
        ds.SliceThickness = 8.0
        ds.InstanceNumber = k + 1
        ds.ImageType = ["ORIGINAL", "PRIMARY", "OTHER"]
        out.append(ds)
    return out


def write(ds: Dataset, path: Path, ts: str = ExplicitVRLittleEndian) -> Path:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = ds.SOPClassUID, ds.SOPInstanceUID
    meta.TransferSyntaxUID = ts
    ds.file_meta = meta
    ds.save_as(path, enforce_file_format=True)
    return path


def _with_uid_bytes(ds: Dataset, kw: str, value: bytes, ts: str) -> bytes:
    """The dataset encoded with ``value`` as the bytes of UID ``kw`` (pydicom would strip
    whitespace from, or refuse, such a value if it were given it): a placeholder of the same
    padded length is encoded, then replaced."""
    if len(value) % 2:
        value += b"\x00"
    placeholder = "1." + "9" * (len(value) - 2)
    setattr(ds, kw, placeholder)
    data = encoded(ds, ts)
    assert data.count(placeholder.encode()) == 1
    return data.replace(placeholder.encode(), value)


def build(seed: int = 13) -> list[Case]:
    """The whole corpus, interleaved so that every batch mixes categories and controls."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom warns about the very values the corpus spoils
        return _build(seed)


def _build(seed: int) -> list[Case]:
    rng = random.Random(seed)
    groups = [truncated(), garbage(rng), wrong_sop_class(), missing_uids(), invalid_uids(), overlong_request_uid(),
              huge_lengths(), bad_vrs(), transfer_syntax_mismatch(), valid()]
    cases = [c for g in groups for c in g]
    rng.shuffle(cases)
    # Duplicates keep their order (original first), spread through the corpus.
    dups = duplicates()
    step = max(1, len(cases) // len(dups))
    for i, d in enumerate(dups):
        cases.insert(min(len(cases), (i + 1) * step + i), d)
    return cases
