from __future__ import annotations

import pytest
from pydicom import dcmread
from pydicom.data import get_testdata_file

from node.receive.header import STATUS_CANNOT_UNDERSTAND, STATUS_DATASET_MISMATCH, Refusal, parse_header


def _args(name: str):  # type: ignore[no-untyped-def]
    p = get_testdata_file(name)
    ds = dcmread(p)
    return open(p, "rb").read(), dict(affected_sop_class=str(ds.SOPClassUID), affected_sop_instance=str(ds.SOPInstanceUID),
                                      transfer_syntax=str(ds.file_meta.TransferSyntaxUID))


@pytest.mark.parametrize("name", ["MR_small.dcm", "MR_small_jp2klossless.dcm", "MR_small_bigendian.dcm",
                                  "MR_small_implicit.dcm", "MR_small_RLE.dcm"])
def test_header_fields_and_truncation(name: str) -> None:
    data, kw = _args(name)
    h = parse_header(data, **kw)
    assert h.attrs["Modality"] == "MR" and h.attrs["Rows"] == 64 and len(h.attrs["ImagePositionPatient"]) == 3
    for cut in (1, 40, 1000):
        with pytest.raises(Refusal) as exc:
            parse_header(data[:-cut], **kw)
        assert exc.value.status == STATUS_CANNOT_UNDERSTAND


def test_mismatch_with_request() -> None:
    data, kw = _args("MR_small.dcm")
    with pytest.raises(Refusal) as exc:
        parse_header(data, **{**kw, "affected_sop_instance": "1.2.3"})
    assert exc.value.status == STATUS_DATASET_MISMATCH


def test_garbage_refused() -> None:
    with pytest.raises(Refusal) as exc:
        parse_header(b"\x00" * 128 + b"DICM" + b"\x01" * 50, affected_sop_class="1.2", affected_sop_instance="1.3",
                     transfer_syntax="1.2.840.10008.1.2.1")
    assert exc.value.status == STATUS_CANNOT_UNDERSTAND
