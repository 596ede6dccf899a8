"""TID 1500 report: valid, parses with highdicom, numbers equal the measurements and the SEG."""

from __future__ import annotations

import io

import highdicom as hd
import pytest

from node.encode.codes import LOCAL_SCHEME, SEGMENT_CONCEPTS
from node.encode.readback import seg_volumes_ml, sr_values
from tests.support.dicom_tools import dciodvfy_errors, needs_dciodvfy


@needs_dciodvfy
def test_sr_passes_dciodvfy(encoded, tmp_path) -> None:
    # dciodvfy warns about the private coding scheme "99LGENODE" (not a defined term); no errors.
    assert dciodvfy_errors(encoded[1], tmp_path) == []


@pytest.fixture(scope="module")
def sr_back(encoded, tmp_path_factory):
    path = tmp_path_factory.mktemp("sr") / "sr.dcm"
    encoded[1].save_as(path, enforce_file_format=True)
    return hd.sr.srread(path)


def test_sr_values_equal_the_measurements(sr_back, results) -> None:
    m, _ = results
    v = sr_values(sr_back)
    assert v.structures["lv_cavity"]["volume_ml"] == pytest.approx(m.lv_cavity_ml, rel=1e-9)
    assert v.structures["myocardium"]["volume_ml"] == pytest.approx(m.myocardium_ml, rel=1e-9)
    assert v.structures["myocardium"]["mass_g"] == pytest.approx(m.myocardial_mass_g, rel=1e-9)
    assert v.structures["infarct"]["volume_ml"] == pytest.approx(m.infarct_ml, rel=1e-9)
    assert v.structures["infarct"]["percent"] == pytest.approx(m.infarct_percent_of_myocardium, rel=1e-9)
    assert v.structures["mvo"]["volume_ml"] == pytest.approx(m.mvo_ml, rel=1e-9)
    assert v.structures["mvo"]["percent"] == pytest.approx(m.mvo_percent_of_myocardium, rel=1e-9)
    assert m.mvo_ml > 0 and m.infarct_ml > m.mvo_ml


def test_sr_volumes_equal_the_seg_segments(sr_back, encoded) -> None:
    seg = encoded[0]
    from_seg = seg_volumes_ml(seg)
    v = sr_values(sr_back)
    for c in SEGMENT_CONCEPTS:
        assert v.structures[c.key]["volume_ml"] == pytest.approx(from_seg[c.key], rel=1e-6)
        assert v.referenced_segments[c.key] == (str(seg.SOPInstanceUID), c.number)


def test_sr_aha_values(sr_back, results) -> None:
    _, aha = results
    v = sr_values(sr_back)
    covered = {s.number for s in aha.segments if s.covered}
    assert set(v.aha) == covered and len(covered) >= 12
    for s in aha.segments:
        if s.covered:
            assert v.aha[s.number]["percent_enhanced"] == pytest.approx(s.percent_enhanced)
            assert v.aha[s.number]["mean_transmurality_percent"] == pytest.approx(
                s.mean_transmurality_percent)
    assert v.n_transmural_segments == aha.n_transmural_segments


def test_sr_identity_and_references(encoded, case_series, algorithm, sr_back) -> None:
    seg, sr, _ = encoded
    src = case_series.datasets[0]
    assert sr.StudyInstanceUID == src.StudyInstanceUID
    assert sr.SeriesNumber == src.SeriesNumber * 100 + 2
    assert sr.CompletionFlag == "COMPLETE" and sr.VerificationFlag == "UNVERIFIED"
    assert sr.PreliminaryFlag == "PRELIMINARY"
    assert "research" in sr.SeriesDescription.lower()
    assert sr.CodingSchemeIdentificationSequence[0].CodingSchemeDesignator == LOCAL_SCHEME
    evidence = {item.ReferencedSOPInstanceUID
                for study in sr.CurrentRequestedProcedureEvidenceSequence
                for series in study.ReferencedSeriesSequence
                for item in series.ReferencedSOPSequence}
    assert {str(ds.SOPInstanceUID) for ds in case_series.datasets} | {seg.SOPInstanceUID} == evidence
    groups = sr_back.content.get_volumetric_roi_measurement_groups()
    for g in groups:
        ref = g.referenced_segment
        assert ref.source_series_for_segmentation.value == src.SeriesInstanceUID
    buf = io.BytesIO()
    sr.save_as(buf, enforce_file_format=True)
    raw = buf.getvalue()
    assert algorithm.name.encode() in raw and algorithm.version.encode() in raw
    # How the AHA reference was chosen is stated in the algorithm parameters.
    assert b"aha_reference=patient-superior" in raw


def test_sr_carries_quality_and_review_flag(sr_back) -> None:
    from tests.node.encode.conftest import QUALITY

    v = sr_values(sr_back)
    assert v.quality_score == pytest.approx(QUALITY.score, abs=1e-4)
    assert v.needs_review is True
    assert v.infarct_percent_spread == pytest.approx(QUALITY.infarct_pct_spread, abs=1e-2)
