"""encode_results: three objects, deterministic UIDs (a retry re-sends the same objects)."""

from __future__ import annotations

import dataclasses
import io

from node.encode import encode_results, encode_seg_sr, object_uids
from node.encode.numbering import derived_series_number
from node.encode.readback import sr_values
from node.encode.uids import derive_uid
from tests.support.dicom_tools import dciodvfy_errors, needs_dciodvfy

from .conftest import CREATED, QUALITY


def _bytes(ds) -> bytes:
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def test_three_objects_in_the_source_study(encoded, case_series) -> None:
    seg, sr, pdf = encoded
    assert [ds.Modality for ds in encoded] == ["SEG", "SR", "DOC"]
    study = case_series.datasets[0].StudyInstanceUID
    assert {ds.StudyInstanceUID for ds in encoded} == {study}
    assert len({ds.SeriesInstanceUID for ds in encoded}) == 3
    assert len({ds.SOPInstanceUID for ds in encoded}) == 3


def test_reencoding_gives_the_same_objects(encoded, case_series, results, algorithm) -> None:
    m, aha = results
    again = encode_seg_sr(case_series.datasets, case_series.labels, case_series.volume, m, aha,
                          algorithm, created=CREATED, quality=QUALITY)
    assert again.seg.SOPInstanceUID == encoded[0].SOPInstanceUID
    assert again.sr.SOPInstanceUID == encoded[1].SOPInstanceUID
    assert _bytes(again.seg) == _bytes(encoded[0])
    assert _bytes(again.sr) == _bytes(encoded[1])
    expected = object_uids(str(case_series.datasets[0].SeriesInstanceUID), algorithm)
    assert expected["pdf"].sop_instance_uid == encoded[2].SOPInstanceUID


def test_new_model_version_or_job_gives_new_uids(case_series, results, algorithm) -> None:
    m, aha = results
    newer = dataclasses.replace(algorithm, version="0.2.0")
    a = object_uids("job-1", algorithm)
    assert object_uids("job-1", algorithm) == a
    assert object_uids("job-1", newer)["seg"] != a["seg"]
    assert object_uids("job-2", algorithm)["seg"] != a["seg"]
    objs = encode_results(case_series.datasets, case_series.labels, case_series.volume, m, aha,
                          newer, job_key="job-1", with_report=False)
    assert [o.SOPInstanceUID for o in objs] == [
        object_uids("job-1", newer)["seg"].sop_instance_uid,
        object_uids("job-1", newer)["sr"].sop_instance_uid]


def test_uid_form() -> None:
    uid = derive_uid("1.2.3", "seg", "instance", "v1")
    assert len(uid) <= 64 and all(part.isdigit() for part in uid.split("."))
    assert derive_uid("1.2.3", "seg", "instance", "v1", prefix="1.2.999") .startswith("1.2.999.")
    assert derive_uid("1.2.3", "seg", "series", "v1") != uid


def test_series_numbers() -> None:
    assert derived_series_number(12, "seg") == 1201
    assert derived_series_number(12, "sr") == 1202
    assert derived_series_number(12, "pdf") == 1203
    assert derived_series_number(None, "seg") == 9901
    assert derived_series_number(2**31 // 10, "sr") == 9902


def test_report_is_reproducible(encoded, case_series, results, algorithm) -> None:
    from node.encode import encode_report

    m, aha = results
    pdf = encode_report(case_series.datasets, case_series.labels, case_series.volume, m, aha,
                        algorithm, derived_from=encoded[:2], created=CREATED, quality=QUALITY)
    assert _bytes(pdf) == _bytes(encoded[2])


@needs_dciodvfy
def test_without_aha_the_objects_are_still_valid(case_series, results, algorithm, tmp_path) -> None:
    m, _ = results
    seg, sr, pdf = encode_results(case_series.datasets, case_series.labels, case_series.volume,
                                  m, None, algorithm, job_key="no-aha")
    for ds in (seg, sr, pdf):
        assert dciodvfy_errors(ds, tmp_path) == []
    v = sr_values(sr)
    assert v.aha == {} and v.n_transmural_segments is None
    assert v.quality_score is None and v.needs_review is None  # no quality given: none written
    assert v.structures["myocardium"]["volume_ml"] == m.myocardium_ml
