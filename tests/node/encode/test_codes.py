"""Every coded concept we write exists in pydicom's dictionaries with the same value."""

from __future__ import annotations

from pydicom.sr.codedict import codes

from node.encode import codes as c


def _in_pydicom(concept) -> bool:
    scheme = getattr(codes, concept.scheme_designator)
    return any(code.value == concept.value for code in scheme.concepts.values())


def test_segment_concepts_are_standard_codes() -> None:
    assert [s.number for s in c.SEGMENT_CONCEPTS] == [1, 2, 3, 4]
    for s in c.SEGMENT_CONCEPTS:
        for concept in (s.category, s.property_type, s.anatomic_region):
            if concept is not None:
                assert concept.scheme_designator in ("SCT", "DCM")
                assert _in_pydicom(concept), concept


def test_segment_categories_are_from_cid_7150() -> None:
    allowed = {code.value for code in (codes.cid7150.AnatomicalStructure,
                                       codes.cid7150.MorphologicallyAbnormalStructure)}
    assert {s.category.value for s in c.SEGMENT_CONCEPTS} <= allowed


def test_measurement_names_and_aha_codes() -> None:
    for concept in (c.VOLUME, c.MASS, c.PROCEDURE_CARDIAC_MRI, c.ALGORITHM_FAMILY_AI):
        assert _in_pydicom(concept)
    cid3717 = {code.value for code in codes.cid3717.concepts.values()}
    assert {code.value for code in c.AHA_SEGMENT_CODES.values()} == cid3717
    assert len(c.AHA_SEGMENT_CODES) == 17
    # Private codes only in the declared private scheme.
    for concept in (c.PERCENT_OF_LV_MYOCARDIUM, c.PERCENT_ENHANCED, c.MEAN_TRANSMURALITY,
                    c.N_TRANSMURAL_SEGMENTS):
        assert concept.scheme_designator == c.LOCAL_SCHEME.upper() and c.LOCAL_SCHEME.startswith("99")
