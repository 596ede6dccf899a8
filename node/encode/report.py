"""The readable report: a PDF (matplotlib) wrapped in a DICOM Encapsulated PDF object.

The PDF (A4, two pages) carries a "RESEARCH USE ONLY - not for diagnosis" banner on every
page, the patient/study identifiers of the source series (so it cannot be confused with another
patient's report when opened outside the PACS), the key numbers, the AHA method and reference
used, the bullseye of per-segment transmurality and overlays of up to three representative
slices (the middle slice of the basal, mid and apical levels). It is written with matplotlib's
PdfPages without a creation date, so the same inputs give the same bytes.

DICOM: highdicom has no Encapsulated PDF class, so `EncapsulatedPDF` extends highdicom's
`SOPClass` (patient, study, series, equipment and SOP common modules filled by highdicom from
the source images) with the SC Equipment and Encapsulated Document modules (PS3.3 A.45.1):
Modality DOC, ConversionType WSD, MIME type application/pdf, the document title, Burned In
Annotation YES (the pages show patient identifiers) and a Source Instance Sequence that lists the
source images, the SEG and the SR the report was made from.
"""

from __future__ import annotations

import datetime
import io
import textwrap
from collections.abc import Sequence

import highdicom as hd
import numpy as np
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence as DicomSequence

from models.aha import AhaResult
from models.bullseye import draw_bullseye
from models.measurements import Measurements
from models.segment import Quality
from models.volume import Volume
from node.encode.algorithm import AlgorithmInfo
from node.encode.codes import DOCUMENT_TITLE
from node.encode.uids import ObjectUIDs

__all__ = [
    "ENCAPSULATED_PDF_STORAGE",
    "RESEARCH_BANNER",
    "EncapsulatedPDF",
    "render_report_pdf",
    "representative_slices",
    "build_report",
    "SERIES_DESCRIPTION",
]

ENCAPSULATED_PDF_STORAGE = "1.2.840.10008.5.1.4.1.1.104.1"
RESEARCH_BANNER = "RESEARCH USE ONLY \u2014 not for diagnosis"
SERIES_DESCRIPTION = "LGE AI report (research use only)"

_COLORS = {"lv_cavity": "#e6c828", "myocardium": "#3c78dc", "infarct": "#e63232", "mvo": "#28c85a"}


def representative_slices(labels: np.ndarray, aha: AhaResult | None, max_n: int = 3) -> list[int]:
    """Middle slice of each covered level (basal, mid, apical), else evenly spaced LV slices."""
    picked: list[int] = []
    if aha is not None:
        for level in ("basal", "mid", "apical"):
            ks = [k for k, lv in enumerate(aha.slice_levels) if lv == level]
            if ks:
                picked.append(ks[len(ks) // 2])
    if not picked:
        ks = [k for k in range(labels.shape[0]) if np.isin(labels[k], (1, 2, 3, 4)).any()]
        if ks:
            idx = np.linspace(0, len(ks) - 1, min(max_n, len(ks))).round().astype(int)
            picked = sorted({ks[i] for i in idx})
    return picked[:max_n]


def _window(img: np.ndarray) -> tuple[float, float]:
    lo, hi = np.percentile(img, [1.0, 99.5])
    return float(lo), float(max(hi, lo + 1.0))


def _crop(mask: np.ndarray, spacing: tuple[float, float], margin_mm: float = 25.0) -> tuple[slice, slice]:
    if not mask.any():
        return slice(None), slice(None)
    ii, jj = np.nonzero(mask)
    mi, mj = int(margin_mm / spacing[0]), int(margin_mm / spacing[1])
    return (slice(max(0, ii.min() - mi), ii.max() + mi + 1),
            slice(max(0, jj.min() - mj), jj.max() + mj + 1))


def _fmt(v: float | None, unit: str, digits: int = 1) -> str:
    return "n/a" if v is None else f"{v:.{digits}f} {unit}"


def render_report_pdf(
    volume: Volume,
    labels: np.ndarray,
    measurements: Measurements,
    aha: AhaResult | None,
    algorithm: AlgorithmInfo,
    *,
    header: dict[str, str] | None = None,
    quality: Quality | None = None,
) -> bytes:
    """The two-page PDF as bytes. ``header``: identifiers shown at the top (label -> text);
    ``quality``: the model's confidence, with a prominent warning when it asks for review."""
    from matplotlib.backends.backend_pdf import PdfPages
    from matplotlib.figure import Figure

    header = header or {}
    footer = (f"{RESEARCH_BANNER}.  {algorithm.name} {algorithm.version} "
              f"(lgenode {algorithm.software_version}). Automatic segmentation, not verified by a "
              "physician.")
    buf = io.BytesIO()
    with PdfPages(buf, metadata={"Title": DOCUMENT_TITLE, "Creator": "lgenode",
                                 "Producer": "lgenode (matplotlib)", "CreationDate": None}) as pdf:
        # Page 1: identifiers, numbers, bullseye
        fig = Figure(figsize=(8.27, 11.69))
        fig.text(0.5, 0.965, RESEARCH_BANNER, ha="center", va="center", fontsize=15,
                 color="white", weight="bold",
                 bbox={"facecolor": "#b00020", "edgecolor": "none", "pad": 6})
        fig.text(0.06, 0.925, "Late gadolinium enhancement: automatic LV analysis",
                 fontsize=14, weight="bold")
        y = 0.9
        for key, value in header.items():
            fig.text(0.06, y, f"{key}:", fontsize=9, weight="bold")
            fig.text(0.30, y, value, fontsize=9)
            y -= 0.018
        y -= 0.012
        m = measurements
        rows = [
            ("LV cavity volume", _fmt(m.lv_cavity_ml, "ml")),
            ("LV myocardial volume", _fmt(m.myocardium_ml, "ml")),
            ("LV myocardial mass (1.05 g/ml)", _fmt(m.myocardial_mass_g, "g")),
            ("Infarct (LGE) volume", _fmt(m.infarct_ml, "ml")),
            ("Infarct size, % of LV myocardium", _fmt(m.infarct_percent_of_myocardium, "%")),
            ("Microvascular obstruction volume", _fmt(m.mvo_ml, "ml", 2)),
            ("MVO, % of LV myocardium", _fmt(m.mvo_percent_of_myocardium, "%")),
        ]
        if aha is not None:
            covered = sum(1 for s in aha.segments if s.covered)
            rows.append(("AHA segments with transmurality > 50 %",
                         f"{aha.n_transmural_segments} of {covered} covered"))
        if quality is not None:
            members = f", {quality.members} models" if quality.members > 1 else ""
            rows.append(("Model confidence (quality score, 0-1)",
                         f"{quality.score:.2f}{members}"
                         + (f" (threshold {quality.threshold:.2f})" if quality.threshold else "")))
        fig.text(0.06, y, "Key results", fontsize=11, weight="bold")
        if quality is not None and quality.needs_review:
            fig.text(0.34, y, "NEEDS CAREFUL REVIEW: low model confidence", fontsize=10,
                     color="white", weight="bold",
                     bbox={"facecolor": "#c05000", "edgecolor": "none", "pad": 3})
        y -= 0.022
        for name, value in rows:
            fig.text(0.08, y, name, fontsize=9.5)
            fig.text(0.52, y, value, fontsize=9.5, weight="bold")
            y -= 0.019
        y -= 0.008
        notes = [
            f"Volumes: voxel count x voxel volume using the slice spacing "
            f"({m.n_slices} slices, {m.voxel_volume_ml * 1000:.1f} mm3 per voxel).",
        ]
        if quality is not None and quality.infarct_below_minimum is not None:
            notes.append(f"Infarct reported as none: the model found enhancement in "
                         f"{quality.infarct_below_minimum:.1f} % of the LV myocardium, below its minimum "
                         f"reportable infarct of {quality.min_infarct_percent:g} % (chosen on the "
                         "cross-validation, where such specks were found on most hearts without infarct).")
        if aha is not None:
            ref = aha.method.get("reference_direction", aha.reference)
            notes += [
                f"AHA 17 segments: reference = {ref}.",
                f"Apex at the {aha.apex_end} slice ({aha.apex_end_source}); levels: thirds of "
                "the slices with myocardium; transmurality per ray from the cavity centre.",
            ]
        for note in notes:
            for line in textwrap.wrap(note, 125):
                fig.text(0.06, y, line, fontsize=7.5)
                y -= 0.014
            y -= 0.004
        if aha is not None:
            ax = fig.add_axes((0.10, 0.06, 0.62, 0.44))
            cax = fig.add_axes((0.78, 0.12, 0.025, 0.32))
            draw_bullseye(ax, cax, aha.transmurality_by_segment(), fontsize=8)
            ax.set_title("Mean transmurality of enhancement per AHA segment", fontsize=10)
        fig.text(0.5, 0.02, footer, ha="center", fontsize=6.5, color="#b00020")
        pdf.savefig(fig)

        # Page 2: overlays
        fig = Figure(figsize=(8.27, 11.69))
        fig.text(0.5, 0.965, RESEARCH_BANNER, ha="center", va="center", fontsize=15,
                 color="white", weight="bold",
                 bbox={"facecolor": "#b00020", "edgecolor": "none", "pad": 6})
        fig.text(0.06, 0.93, "Segmentation overlays (representative slices)", fontsize=12,
                 weight="bold")
        picks = representative_slices(labels, aha)
        for n, k in enumerate(picks):
            img = np.asarray(volume.pixels[k], dtype=float)
            lab = labels[k]
            rs, cs = _crop(lab > 0, volume.pixel_spacing)
            lo, hi = _window(img[rs, cs])
            for col, (sub, title) in enumerate(((False, "image"), (True, "overlay"))):
                ax = fig.add_axes((0.06 + col * 0.46, 0.64 - n * 0.29, 0.42, 0.26))
                ax.imshow(img[rs, cs], cmap="gray", vmin=lo, vmax=hi,
                          aspect=volume.pixel_spacing[0] / volume.pixel_spacing[1])
                if sub:
                    crop = lab[rs, cs]
                    # Myocardium first so that the cavity contour stays visible on top.
                    for key, values in (("myocardium", (2, 3, 4)), ("lv_cavity", (1,))):
                        ax.contour(np.isin(crop, values).astype(float), levels=[0.5],
                                   colors=_COLORS[key], linewidths=1.2)
                    for key, values in (("infarct", (3, 4)), ("mvo", (4,))):
                        mask = np.isin(crop, values)
                        if mask.any():
                            rgba = np.zeros((*mask.shape, 4))
                            rgba[mask] = (*_hex(_COLORS[key]), 0.55)
                            ax.imshow(rgba, aspect=volume.pixel_spacing[0] / volume.pixel_spacing[1])
                level = aha.slice_levels[k] if aha is not None else None
                ax.set_title(f"slice {k + 1} of {labels.shape[0]}"
                             + (f" ({level})" if level else "") + f" - {title}", fontsize=8)
                ax.axis("off")
        legend = [("LV cavity (contour)", "lv_cavity"), ("LV myocardium (contour)", "myocardium"),
                  ("Infarct", "infarct"), ("MVO", "mvo")]
        for i, (text, key) in enumerate(legend):
            fig.text(0.08 + i * 0.22, 0.055, "\u25a0 " + text, color=_COLORS[key], fontsize=9)
        fig.text(0.5, 0.02, footer, ha="center", fontsize=6.5, color="#b00020")
        pdf.savefig(fig)
    return buf.getvalue()


def _hex(color: str) -> tuple[float, float, float]:
    color = color.lstrip("#")
    return tuple(int(color[i:i + 2], 16) / 255.0 for i in (0, 2, 4))  # type: ignore[return-value]


def _source_instance_item(ds: Dataset) -> Dataset:
    item = Dataset()
    item.ReferencedSOPClassUID = ds.SOPClassUID
    item.ReferencedSOPInstanceUID = ds.SOPInstanceUID
    return item


class EncapsulatedPDF(hd.base.SOPClass):
    """Encapsulated PDF Storage instance (PS3.3 A.45.1) in the source images' study."""

    def __init__(
        self,
        pdf: bytes,
        source_images: Sequence[Dataset],
        series_instance_uid: str,
        series_number: int,
        sop_instance_uid: str,
        instance_number: int,
        manufacturer: str,
        *,
        document_title: str = DOCUMENT_TITLE,
        derived_from: Sequence[Dataset] = (),
        manufacturer_model_name: str | None = None,
        software_versions: str | None = None,
        device_serial_number: str | None = None,
        series_description: str | None = None,
        content_datetime: datetime.datetime | None = None,
    ) -> None:
        if not pdf.startswith(b"%PDF"):
            raise ValueError("pdf must be the bytes of a PDF document")
        ref = source_images[0]
        super().__init__(
            study_instance_uid=ref.StudyInstanceUID,
            series_instance_uid=series_instance_uid,
            series_number=series_number,
            sop_instance_uid=sop_instance_uid,
            sop_class_uid=ENCAPSULATED_PDF_STORAGE,
            instance_number=instance_number,
            modality="DOC",
            manufacturer=manufacturer,
            patient_id=ref.get("PatientID"),
            patient_name=ref.get("PatientName"),
            patient_birth_date=ref.get("PatientBirthDate"),
            patient_sex=ref.get("PatientSex"),
            accession_number=ref.get("AccessionNumber"),
            study_id=ref.get("StudyID"),
            study_date=ref.get("StudyDate"),
            study_time=ref.get("StudyTime"),
            referring_physician_name=ref.get("ReferringPhysicianName"),
            manufacturer_model_name=manufacturer_model_name,
            software_versions=software_versions,
            device_serial_number=device_serial_number,
            series_description=series_description,
        )
        when = content_datetime or datetime.datetime.now()
        # SC Equipment: made on a workstation.
        self.ConversionType = "WSD"
        # Encapsulated Document
        self.ContentDate = when.strftime("%Y%m%d")
        self.ContentTime = when.strftime("%H%M%S")
        self.InstanceCreationDate = self.ContentDate
        self.InstanceCreationTime = self.ContentTime
        self.AcquisitionDateTime = when.strftime("%Y%m%d%H%M%S")
        self.BurnedInAnnotation = "YES"
        self.RecognizableVisualFeatures = "NO"
        self.DocumentTitle = document_title[:64]
        self.ConceptNameCodeSequence = DicomSequence([])
        self.MIMETypeOfEncapsulatedDocument = "application/pdf"
        self.EncapsulatedDocumentLength = len(pdf)
        # OB values are padded to an even length by the writer (with a NUL, harmless for PDF).
        self.EncapsulatedDocument = pdf
        self.SourceInstanceSequence = DicomSequence(
            [_source_instance_item(ds) for ds in (*source_images, *derived_from)])

    @property
    def pdf_bytes(self) -> bytes:
        data = bytes(self.EncapsulatedDocument)
        return data[: int(self.EncapsulatedDocumentLength)]


def _header(ref: Dataset) -> dict[str, str]:
    def get(name: str) -> str:
        v = ref.get(name)
        return str(v) if v not in (None, "") else "-"

    return {
        "Patient": f"{get('PatientName')}  (ID {get('PatientID')})",
        "Study": f"{get('StudyDate')}  {get('StudyDescription')}  (accession {get('AccessionNumber')})",
        "Source series": f"#{get('SeriesNumber')}  {get('SeriesDescription')}",
    }


def build_report(
    source_datasets: Sequence[Dataset],
    volume: Volume,
    labels: np.ndarray,
    measurements: Measurements,
    aha: AhaResult | None,
    algorithm: AlgorithmInfo,
    uids: ObjectUIDs,
    *,
    series_number: int,
    derived_from: Sequence[Dataset] = (),
    content_datetime: datetime.datetime | None = None,
    quality: Quality | None = None,
) -> EncapsulatedPDF:
    """Render the PDF and wrap it; ``derived_from``: the SEG and SR it summarises."""
    ref = source_datasets[0]
    pdf = render_report_pdf(volume, labels, measurements, aha, algorithm, header=_header(ref),
                            quality=quality)
    return EncapsulatedPDF(
        pdf,
        source_datasets,
        series_instance_uid=uids.series_instance_uid,
        series_number=series_number,
        sop_instance_uid=uids.sop_instance_uid,
        instance_number=1,
        manufacturer=algorithm.manufacturer,
        derived_from=derived_from,
        manufacturer_model_name=algorithm.model_name,
        software_versions=algorithm.software_version,
        device_serial_number=algorithm.device_serial_number,
        series_description=SERIES_DESCRIPTION,
        content_datetime=content_datetime,
    )
