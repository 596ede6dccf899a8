"""Coded concepts used in the SEG, the SR and the PDF, with the reason for each choice.

Every SNOMED CT (SCT) and DICOM (DCM) code below is taken from pydicom's code dictionary
(`pydicom.sr.codedict.codes`, generated from the PS3.16 tables); `tests/node/encode/test_codes.py`
asserts each value is still there. UCUM units are grammar expressions (ml, g, %, {segments}).
Code meanings are short display names, not SNOMED fully specified names with a "(semantic tag)".

SEG segments (Segmented Property Category / Type, PS3.16 CID 7150 / CID 7151):

1. LV cavity: category Anatomical Structure (SCT 91723000), type **Left ventricle**
   (SCT 87878005, CID 7152 "Cardiac Structure Segmentation Type"). pydicom's dictionaries
   have no "left ventricular cavity" or "LV blood pool" structure concept (only the observable
   "Left ventricular cavity size", 250929008, which is not a structure). CID 7152, the standard's
   list of cardiac segmentation types, offers Left ventricle; the segment label "LV cavity" and
   the description state that this segment is the blood pool only (the wall is segment 2).
2. Myocardium: category Anatomical Structure, type **Left Ventricle Myocardium**
   (SCT 49848007, CID 12305). It is the whole LV wall (labels 2+3+4).
3. Infarct: category Morphologically Abnormal Structure (SCT 49755003), type **Myocardial
   infarction** (SCT 22298006, CID 3121), anatomic region Left Ventricle Myocardium.
   It covers labels 3+4 (MVO is infarcted tissue).
4. MVO: category Morphologically Abnormal Structure, type **Obstruction** (SCT 26036001, a
   morphologic abnormality), anatomic region Left Ventricle Myocardium; label and description say
   "Microvascular obstruction (no-reflow)". No "microvascular obstruction" / "no-reflow" concept
   exists in pydicom's dictionaries; a local code would be invisible to other software,
   whereas Obstruction + myocardium region is the closest standard pair. Label 4 only.

The segments nest (MVO within infarct within myocardium) and overlap, which BINARY SEG allows;
each then carries exactly the structure that the SR measures from it.

SR measurement names: **Volume** (SCT 118565006) in ml and **Mass** (SCT 118538004) in g are
standard. The derived LGE indices (% of LV myocardium, segmental % enhanced, mean transmural
extent, count of transmural segments) have no code in pydicom's DCM, SNOMED or LOINC dictionaries,
so they use a private coding scheme, `99LGENODE` (PS3.3 §8.2: designators starting with
"99" are private), declared in the SR's Coding Scheme Identification Sequence. AHA segments use
the standard CID 3717 (17-segment model) codes.
"""

from __future__ import annotations

from highdicom.coding_schemes import CodingSchemeIdentificationItem
from highdicom.sr import CodedConcept
from pydicom.sr.codedict import codes
from pydicom.sr.coding import Code

__all__ = [
    "LOCAL_SCHEME",
    "local_coding_scheme",
    "SegmentConcept",
    "SEGMENT_CONCEPTS",
    "VOLUME",
    "MASS",
    "PERCENT_OF_LV_MYOCARDIUM",
    "PERCENT_ENHANCED",
    "MEAN_TRANSMURALITY",
    "N_TRANSMURAL_SEGMENTS",
    "QUALITY_SCORE",
    "NEEDS_CAREFUL_REVIEW",
    "INFARCT_PERCENT_SPREAD",
    "YES",
    "NO",
    "UNITLESS",
    "MILLILITER",
    "GRAM",
    "PERCENT",
    "SEGMENTS_UNIT",
    "PROCEDURE_CARDIAC_MRI",
    "ALGORITHM_FAMILY_AI",
    "AHA_SEGMENT_CODES",
    "LV_MYOCARDIUM",
    "DOCUMENT_TITLE",
]


def _sct(code: Code, meaning: str | None = None) -> CodedConcept:
    """A standard code from pydicom's dictionary with a short display meaning."""
    return CodedConcept(code.value, code.scheme_designator, meaning or code.meaning)


# --- SEG segment concepts ------------------------------------------------------------------

ANATOMICAL_STRUCTURE = _sct(codes.SCT.AnatomicalStructure)
MORPHOLOGICALLY_ABNORMAL = _sct(codes.SCT.MorphologicallyAbnormalStructure)
LEFT_VENTRICLE = _sct(codes.SCT.LeftVentricle, "Left ventricle")
LV_MYOCARDIUM = _sct(codes.SCT.LeftVentricleMyocardium, "Left ventricle myocardium")
MYOCARDIAL_INFARCTION = _sct(codes.SCT.MyocardialInfarction, "Myocardial infarction")
OBSTRUCTION = _sct(codes.SCT.Obstruction, "Obstruction")


class SegmentConcept:
    """What one SEG segment is: its key in `models.measurements.STRUCTURE_LABELS` and its codes."""

    def __init__(
        self,
        number: int,
        key: str,
        label: str,
        description: str,
        category: CodedConcept,
        property_type: CodedConcept,
        anatomic_region: CodedConcept | None,
        display_rgb: tuple[int, int, int],
    ) -> None:
        self.number = number
        self.key = key
        self.label = label
        self.description = description
        self.category = category
        self.property_type = property_type
        self.anatomic_region = anatomic_region
        self.display_rgb = display_rgb

    def __repr__(self) -> str:
        return f"SegmentConcept({self.number}, {self.key!r})"


SEGMENT_CONCEPTS: tuple[SegmentConcept, ...] = (
    SegmentConcept(1, "lv_cavity", "LV cavity", "Left ventricular cavity (blood pool)",
                   ANATOMICAL_STRUCTURE, LEFT_VENTRICLE, None, (230, 200, 40)),
    SegmentConcept(2, "myocardium", "LV myocardium",
                   "Left ventricular myocardium (normal + infarct + MVO)",
                   ANATOMICAL_STRUCTURE, LV_MYOCARDIUM, None, (60, 120, 220)),
    SegmentConcept(3, "infarct", "Myocardial infarction",
                   "Late gadolinium enhancement: infarcted myocardium (including MVO)",
                   MORPHOLOGICALLY_ABNORMAL, MYOCARDIAL_INFARCTION, LV_MYOCARDIUM, (230, 50, 50)),
    SegmentConcept(4, "mvo", "Microvascular obstruction",
                   "Microvascular obstruction (no-reflow) within the infarct",
                   MORPHOLOGICALLY_ABNORMAL, OBSTRUCTION, LV_MYOCARDIUM, (40, 200, 90)),
)

# --- SR measurement names and units ---------------------------------------------------------

VOLUME = _sct(codes.SCT.Volume)
MASS = _sct(codes.SCT.MassQuantity, "Mass")

LOCAL_SCHEME = "99LGENODE"


def _local(value: str, meaning: str) -> CodedConcept:
    return CodedConcept(value, LOCAL_SCHEME, meaning)


PERCENT_OF_LV_MYOCARDIUM = _local("LGE0001", "Percent of left ventricular myocardial volume")
PERCENT_ENHANCED = _local("LGE0002", "Percent of segment myocardium enhanced")
MEAN_TRANSMURALITY = _local("LGE0003", "Mean transmural extent of enhancement")
N_TRANSMURAL_SEGMENTS = _local("LGE0004", "Number of segments with transmural extent > 50%")
# The model's own confidence in this series' result (models.segment.Quality): no standard code
# describes an AI output's self-assessed quality, hence local codes. The review flag is a
# qualitative evaluation answered with the standard SNOMED Yes / No.
QUALITY_SCORE = _local("LGE0005", "Segmentation quality score (model confidence)")
NEEDS_CAREFUL_REVIEW = _local("LGE0006", "Needs careful review")
INFARCT_PERCENT_SPREAD = _local("LGE0007", "Infarct percent spread across ensemble members")
YES = _sct(codes.SCT.Yes)
NO = _sct(codes.SCT.No)
UNITLESS = CodedConcept("1", "UCUM", "no units")


def local_coding_scheme() -> CodingSchemeIdentificationItem:
    """Declaration of `LOCAL_SCHEME` for the SR's Coding Scheme Identification Sequence."""
    return CodingSchemeIdentificationItem(
        designator=LOCAL_SCHEME,
        name="LGE node local measurement codes",
        version="1",
        responsible_organization="lgenode project",
    )


# UCUM units are expressions of the UCUM grammar (PS3.16 CID 7181 points to it), not a list.
MILLILITER = CodedConcept("ml", "UCUM", "milliliter")
GRAM = CodedConcept("g", "UCUM", "gram")
PERCENT = _sct(codes.UCUM.Percent, "Percent")
# UCUM annotation unit: a dimensionless count of AHA segments.
SEGMENTS_UNIT = CodedConcept("{segments}", "UCUM", "segments")

PROCEDURE_CARDIAC_MRI = _sct(codes.SCT.CardiacMRI, "Cardiac MRI")
ALGORITHM_FAMILY_AI = _sct(codes.DCM.ArtificialIntelligence)
# Document Title of the Encapsulated PDF (free text; its Concept Name Code Sequence stays empty).
DOCUMENT_TITLE = "LGE analysis report (research use only)"

# --- AHA 17-segment model (PS3.16 CID 3717), index = AHA segment number ---------------------

AHA_SEGMENT_CODES: dict[int, CodedConcept] = {
    1: _sct(codes.SCT.LeftVentricleBasalAnteriorSegment),
    2: _sct(codes.SCT.LeftVentricleBasalAnteroseptalSegment),
    3: _sct(codes.SCT.LeftVentricleBasalInferoseptalSegment),
    4: _sct(codes.SCT.LeftVentricleBasalInferiorSegment),
    5: _sct(codes.SCT.LeftVentricleBasalInferolateralSegment),
    6: _sct(codes.SCT.LeftVentricleBasalAnterolateralSegment),
    7: _sct(codes.SCT.LeftVentricleMidAnteriorSegment),
    8: _sct(codes.SCT.LeftVentricleMidAnteroseptalSegment),
    9: _sct(codes.SCT.LeftVentricleMidInferoseptalSegment),
    10: _sct(codes.SCT.LeftVentricleMidInferiorSegment),
    11: _sct(codes.SCT.LeftVentricleMidInferolateralSegment),
    12: _sct(codes.SCT.LeftVentricleMidAnterolateralSegment),
    13: _sct(codes.SCT.LeftVentricleApicalAnteriorSegment),
    14: _sct(codes.SCT.LeftVentricleApicalSeptalSegment),
    15: _sct(codes.SCT.LeftVentricleApicalInferiorSegment),
    16: _sct(codes.SCT.LeftVentricleApicalLateralSegment),
    17: _sct(codes.SCT.ApexOfLeftVentricle),
}
