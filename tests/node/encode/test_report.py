"""Encapsulated PDF report: valid DICOM, a real PDF, research banner, references."""

from __future__ import annotations

import subprocess


from node.encode.report import ENCAPSULATED_PDF_STORAGE, representative_slices
from tests.support.dicom_tools import dciodvfy_errors, needs_dciodvfy
from tests.support.require import requires


@needs_dciodvfy
def test_pdf_passes_dciodvfy(encoded, tmp_path) -> None:
    assert dciodvfy_errors(encoded[2], tmp_path) == []


def test_pdf_object(encoded, case_series) -> None:
    seg, sr, pdf = encoded
    src = case_series.datasets[0]
    assert pdf.SOPClassUID == ENCAPSULATED_PDF_STORAGE
    assert pdf.Modality == "DOC"
    assert pdf.MIMETypeOfEncapsulatedDocument == "application/pdf"
    assert pdf.StudyInstanceUID == src.StudyInstanceUID
    assert pdf.PatientID == src.PatientID
    assert pdf.SeriesNumber == src.SeriesNumber * 100 + 3
    data = pdf.pdf_bytes
    assert data.startswith(b"%PDF") and data.rstrip().endswith(b"%%EOF")
    assert int(pdf.EncapsulatedDocumentLength) == len(data)
    refs = {item.ReferencedSOPInstanceUID for item in pdf.SourceInstanceSequence}
    assert {seg.SOPInstanceUID, sr.SOPInstanceUID} <= refs
    assert {str(ds.SOPInstanceUID) for ds in case_series.datasets} <= refs


@requires("ghostscript", "ghostscript not installed (text check)")
def test_pdf_text_has_banner_and_numbers(encoded, results, tmp_path) -> None:
    m, aha = results
    path = tmp_path / "report.pdf"
    path.write_bytes(encoded[2].pdf_bytes)
    text = subprocess.run(["gs", "-q", "-dNOPAUSE", "-dBATCH", "-sDEVICE=txtwrite",
                           "-sOutputFile=-", str(path)], capture_output=True, text=True,
                          timeout=60).stdout
    assert text.count("RESEARCH USE ONLY") >= 2  # on both pages
    assert "not for diagnosis" in text
    assert f"{m.infarct_ml:.1f} ml" in text
    assert f"{m.myocardial_mass_g:.1f} g" in text
    assert "patient-superior" in text
    assert "Mean transmurality" in text
    assert "NEEDS CAREFUL REVIEW" in text  # the fixture's quality asks for review
    assert "0.61, 5 models (threshold 0.80)" in text


def test_representative_slices_one_per_level(results, case_series) -> None:
    _, aha = results
    picks = representative_slices(case_series.labels, aha)
    assert [aha.slice_levels[k] for k in picks] == ["basal", "mid", "apical"]
    assert representative_slices(case_series.labels, None) != []
