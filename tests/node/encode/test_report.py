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


@requires("ghostscript")
def test_pdf_says_when_a_small_infarct_was_reported_as_none(case_series, algorithm, tmp_path) -> None:
    """The model dropped an infarct below its minimum: the report says so, with both numbers."""
    import dataclasses

    import numpy as np

    from models.aha import compute_aha
    from models.measurements import compute_measurements
    from node.encode.report import render_report_pdf
    from tests.node.encode.conftest import QUALITY

    labels = np.where(np.isin(case_series.labels, (3, 4)), 2, case_series.labels).astype(np.uint8)
    m = compute_measurements(labels, case_series.volume)
    assert m.infarct_ml == 0
    text = {}
    for name, q in (("dropped", dataclasses.replace(QUALITY, min_infarct_percent=1.5,
                                                    infarct_below_minimum=0.8)),
                    ("clean", dataclasses.replace(QUALITY, min_infarct_percent=1.5))):
        path = tmp_path / f"{name}.pdf"
        path.write_bytes(render_report_pdf(case_series.volume, labels, m,
                                           compute_aha(labels, case_series.volume), algorithm, quality=q))
        text[name] = subprocess.run(["gs", "-q", "-dNOPAUSE", "-dBATCH", "-sDEVICE=txtwrite",
                                     "-sOutputFile=-", str(path)], capture_output=True, text=True,
                                    timeout=60).stdout
    assert "Infarct reported as none" in text["dropped"]
    assert "0.8 % of the LV myocardium" in text["dropped"] and "1.5 %" in text["dropped"]
    assert "Infarct reported as none" not in text["clean"]
