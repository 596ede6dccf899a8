from __future__ import annotations

from node.config import SelectionConfig
from node.series.selection import evaluate

MR = "1.2.840.10008.5.1.4.1.1.4"


def stack(n: int = 8, desc: str = "LGE PSIR SAX", spacing: float = 8.0, **over):  # type: ignore[no-untyped-def]
    items = []
    for k in range(n):
        a = {"Modality": "MR", "SeriesDescription": desc, "ImageType": ["ORIGINAL", "PRIMARY", "M"],
             "Rows": 256, "Columns": 256, "PixelSpacing": ["1.4", "1.4"],
             "ImageOrientationPatient": ["0.6", "0.8", "0", "0", "0", "-1"],
             "ImagePositionPatient": [str(10 + 0.8 * k * spacing), str(-0.6 * k * spacing), "5"]}
        a.update(over)
        items.append((MR, a))
    return items


def test_lge_selected() -> None:
    v = evaluate(SelectionConfig(), stack())
    assert v.selected and "8 slices" in v.reason


def test_patterns_case_insensitive_on_protocol_name() -> None:
    items = stack(desc="")
    for _, a in items:
        a["ProtocolName"] = "tfl_psir_sax_delayed"
    assert evaluate(SelectionConfig(), items).selected


def test_each_rule_gives_its_reason() -> None:
    rules = SelectionConfig()
    cases = {
        "modality CT": stack(Modality="CT"),
        "matches no LGE pattern": stack(desc="T2 STIR SAX"),
        "exclude pattern": stack(desc="CINE LGE SAX"),
        "ImageType contains": stack(ImageType=["ORIGINAL", "PRIMARY", "LOCALIZER"]),
        "fewer than min_slices": stack(n=2),
        "more than max_slices": stack(n=80),
        "not parallel": stack()[:4] + stack(ImageOrientationPatient=["1", "0", "0", "0", "1", "0"])[4:],
        "same position": stack(spacing=0.0),
        "several image sizes": stack()[:4] + stack(Rows=200)[4:],
    }
    for expected, items in cases.items():
        v = evaluate(rules, items)
        assert not v.selected and expected in v.reason, (expected, v.reason)


def test_uneven_spacing_reported() -> None:
    items = stack()
    del items[3]  # a missing slice leaves a double gap
    v = evaluate(SelectionConfig(), items)
    assert not v.selected and "uneven slice spacing" in v.reason
    assert evaluate(SelectionConfig(require_consistent_geometry=False), items).selected


def test_derived_objects_not_selected() -> None:
    v = evaluate(SelectionConfig(), [("1.2.840.10008.5.1.4.1.1.66.4", {"Modality": "SEG"})])
    assert not v.selected and "not an MR image series" in v.reason
