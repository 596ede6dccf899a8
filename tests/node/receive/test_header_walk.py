"""parse_header's single walk: every truncation is refused, values match pydicom's reading."""

from __future__ import annotations

import io
import json

import pytest
from pydicom import dcmread
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import DeflatedExplicitVRLittleEndian, ExplicitVRLittleEndian

from node.receive.header import (
    _WANTED,
    STATUS_CANNOT_UNDERSTAND,
    STATUS_DATASET_MISMATCH,
    Refusal,
    _plain,
    find_dataset_offset,
    parse_header,
)


def _encoded(ds: Dataset) -> bytes:
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def _with_sequence(ts: str = ExplicitVRLittleEndian) -> bytes:
    """MR_small with an undefined-length sequence in the header (as scanners write them)."""
    ds = dcmread(get_testdata_file("MR_small.dcm"))
    ds.file_meta.TransferSyntaxUID = ts
    item = Dataset()
    item.ReferencedSOPClassUID = ds.SOPClassUID
    item.ReferencedSOPInstanceUID = "1.2.3.4"
    ds.ReferencedImageSequence = Sequence([item])
    ds["ReferencedImageSequence"].is_undefined_length = True
    return _encoded(ds)


def _kwargs(data: bytes) -> dict[str, str]:
    ds = dcmread(io.BytesIO(data), stop_before_pixels=True)
    return dict(affected_sop_class=str(ds.SOPClassUID), affected_sop_instance=str(ds.SOPInstanceUID),
                transfer_syntax=str(ds.file_meta.TransferSyntaxUID))


CASES = {
    "explicit+sequence": lambda: _with_sequence(),
    "encapsulated (JPEG 2000)": lambda: open(get_testdata_file("MR_small_jp2klossless.dcm"), "rb").read(),
    "big endian": lambda: open(get_testdata_file("MR_small_bigendian.dcm"), "rb").read(),
    "implicit": lambda: open(get_testdata_file("MR_small_implicit.dcm"), "rb").read(),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_every_truncation_refused(case: str) -> None:
    data = CASES[case]()
    kw = _kwargs(data)
    offset = find_dataset_offset(data)
    parse_header(data, **kw)  # the whole dataset is fine
    header_end = data.find(b"\xe0\x7f\x10\x00") if "big" not in case else data.find(b"\x7f\xe0\x00\x10")
    # Every cut inside the header (element by element, byte by byte), then steps through the pixels.
    cuts = list(range(offset, header_end + 64)) + list(range(header_end + 64, len(data), 997)) + [len(data) - 1]
    for cut in cuts:
        with pytest.raises(Refusal) as exc:
            parse_header(data[:cut], **kw, dataset_offset=offset)
        assert exc.value.status in (STATUS_CANNOT_UNDERSTAND, STATUS_DATASET_MISMATCH), (cut, exc.value.reason)


def test_deflated_dataset_parsed_and_truncation_refused() -> None:
    ds = dcmread(get_testdata_file("MR_small.dcm"))
    ds.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    data = _encoded(ds)
    h = parse_header(data, **_kwargs(data))
    assert h.sop_instance_uid == ds.SOPInstanceUID and h.attrs["Rows"] == 64
    for cut in (1, 100, len(data) // 2):
        with pytest.raises(Refusal):
            parse_header(data[:-cut], **_kwargs(data))


def _latin1(tmp_path) -> str:  # type: ignore[no-untyped-def]
    ds = dcmread(get_testdata_file("MR_small.dcm"))
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.SeriesDescription = "LGE rehaussement tardif é"
    out = tmp_path / "latin1.dcm"
    ds.save_as(out, enforce_file_format=True)
    return str(out)


@pytest.mark.parametrize("name", ["MR_small.dcm", "MR_small_bigendian.dcm", "MR_small_implicit.dcm", "CT_small.dcm",
                                  "JPEG2000-embedded-sequence-delimiter.dcm", "latin1"])
def test_attrs_equal_pydicom_dataset_values(name: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = _latin1(tmp_path) if name == "latin1" else get_testdata_file(name)
    data = open(path, "rb").read()
    ds = dcmread(path, stop_before_pixels=True)
    expected = {}
    for key in _WANTED[4:]:
        if key in ds:
            v = ds[key].value
            expected[key] = [str(x) for x in v] if key == "ImageType" and ds[key].VM > 1 else _plain(v)
    if isinstance(expected.get("ImageType"), str):
        expected["ImageType"] = [expected["ImageType"]]
    h = parse_header(data, **_kwargs(data))
    assert json.dumps(h.attrs, sort_keys=True) == json.dumps(expected, sort_keys=True)
    assert (h.study_uid, h.series_uid) == (ds.StudyInstanceUID, ds.SeriesInstanceUID)


def test_pydicom_truncated_example_refused() -> None:
    data = open(get_testdata_file("MR_truncated.dcm"), "rb").read()
    with pytest.raises(Refusal) as exc:
        parse_header(data, **_kwargs(data))
    assert exc.value.status == STATUS_CANNOT_UNDERSTAND


def test_image_without_pixel_data_refused() -> None:
    ds = dcmread(get_testdata_file("MR_small.dcm"))
    del ds.PixelData  # as if the transfer had stopped exactly at the Pixel Data element
    data = _encoded(ds)
    with pytest.raises(Refusal) as exc:
        parse_header(data, **_kwargs(data))
    assert exc.value.status == STATUS_DATASET_MISMATCH


def test_too_few_native_pixels_refused_even_with_consistent_element_lengths() -> None:
    """A truncated image re-encoded by a tolerant reader: every element complete, the pixels short."""
    ds = dcmread(get_testdata_file("MR_small.dcm"))
    full = len(ds.PixelData)
    ds.PixelData = ds.PixelData[: full // 3 * 2]
    data = _encoded(ds)
    with pytest.raises(Refusal, match=rf"Pixel Data holds {full // 3 * 2} bytes; .* need {full} \(truncated\)") as exc:
        parse_header(data, **_kwargs(data))
    assert exc.value.status == STATUS_CANNOT_UNDERSTAND


@pytest.mark.parametrize("name", ["MR_small.dcm", "CT_small.dcm", "MR_small_bigendian.dcm", "MR_small_implicit.dcm",
                                  "SC_rgb_small_odd.dcm", "liver_1frame.dcm"])
def test_complete_native_images_pass_the_pixel_length_check(name: str) -> None:
    data = open(get_testdata_file(name), "rb").read()
    parse_header(data, **_kwargs(data))
