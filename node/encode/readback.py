"""Read our SEG and SR back (highdicom) into plain numbers, for checks and the end-to-end test.

`seg_volumes_ml` recomputes each segment's volume from the SEG alone (frames x PixelSpacing x
SpacingBetweenSlices of its Pixel Measures), and `sr_values` collects the SR's numbers, so a
test can assert that the SR says what the SEG holds without trusting the encoder.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import highdicom as hd
import numpy as np
from pydicom.dataset import Dataset

from node.encode.codes import (
    AHA_SEGMENT_CODES,
    INFARCT_PERCENT_SPREAD,
    MASS,
    MEAN_TRANSMURALITY,
    N_TRANSMURAL_SEGMENTS,
    NEEDS_CAREFUL_REVIEW,
    PERCENT_ENHANCED,
    PERCENT_OF_LV_MYOCARDIUM,
    QUALITY_SCORE,
    SEGMENT_CONCEPTS,
    VOLUME,
    YES,
)

__all__ = ["seg_volumes_ml", "SrValues", "sr_values"]


def _as_seg(seg: Dataset | hd.seg.Segmentation) -> hd.seg.Segmentation:
    return seg if isinstance(seg, hd.seg.Segmentation) else hd.seg.Segmentation.from_dataset(seg)


def seg_volumes_ml(seg: Dataset | hd.seg.Segmentation) -> dict[str, float]:
    """Volume of each segment (keyed like `SEGMENT_CONCEPTS`) from the SEG's own geometry."""
    s = _as_seg(seg)
    pm = s.SharedFunctionalGroupsSequence[0].PixelMeasuresSequence[0]
    dz = float(pm.get("SpacingBetweenSlices") or pm.SliceThickness)
    voxel_ml = float(pm.PixelSpacing[0]) * float(pm.PixelSpacing[1]) * dz / 1000.0
    frames = s.pixel_array  # (n_frames, rows, cols), one segment per frame
    frames = frames.reshape((-1, *frames.shape[-2:])) if frames.ndim == 3 else frames[None]
    counts: dict[int, int] = {}
    for i, item in enumerate(s.PerFrameFunctionalGroupsSequence):
        number = int(item.SegmentIdentificationSequence[0].ReferencedSegmentNumber)
        counts[number] = counts.get(number, 0) + int(np.count_nonzero(frames[i]))
    return {c.key: counts.get(c.number, 0) * voxel_ml for c in SEGMENT_CONCEPTS}


@dataclass
class SrValues:
    """Numbers of one of our TID 1500 reports."""

    # structure key -> {measurement name -> value}; names: "volume_ml", "mass_g", "percent"
    structures: dict[str, dict[str, float]] = field(default_factory=dict)
    # structure key -> (SEG SOP Instance UID, segment number)
    referenced_segments: dict[str, tuple[str, int]] = field(default_factory=dict)
    # AHA segment number -> {"percent_enhanced": ..., "mean_transmurality_percent": ...}
    aha: dict[int, dict[str, float]] = field(default_factory=dict)
    n_transmural_segments: int | None = None
    # the model's confidence (absent in reports of a reviewed SEG)
    quality_score: float | None = None
    needs_review: bool | None = None
    infarct_percent_spread: float | None = None


def _value(group, concept) -> float | None:
    found = group.get_measurements(name=concept)
    return float(found[0].value) if found else None


def sr_values(sr: Dataset) -> SrValues:
    """Parse the report with highdicom (`hd.sr.srread` result or any dataset of it)."""
    content = getattr(sr, "content", None)
    if not isinstance(content, hd.sr.MeasurementReport):
        # A freshly built document (or a plain Dataset) is parsed into the TID 1500 template.
        content = hd.sr.Comprehensive3DSR.from_dataset(sr, copy=True).content
    report = content
    out = SrValues()
    for c in SEGMENT_CONCEPTS:
        groups = report.get_volumetric_roi_measurement_groups(finding_type=c.property_type)
        if len(groups) != 1:
            raise ValueError(f"expected one group for {c.key}, found {len(groups)}")
        g = groups[0]
        vals = {"volume_ml": _value(g, VOLUME), "mass_g": _value(g, MASS),
                "percent": _value(g, PERCENT_OF_LV_MYOCARDIUM)}
        out.structures[c.key] = {k: v for k, v in vals.items() if v is not None}
        if c.key == "myocardium":
            out.quality_score = _value(g, QUALITY_SCORE)
            for ev in g.get_qualitative_evaluations(name=NEEDS_CAREFUL_REVIEW):
                out.needs_review = (ev.value.value, ev.value.scheme_designator) == (
                    YES.value, YES.scheme_designator)
        if c.key == "infarct":
            out.infarct_percent_spread = _value(g, INFARCT_PERCENT_SPREAD)
        ref = g.referenced_segment
        if ref is not None:
            out.referenced_segments[c.key] = (
                str(ref.referenced_sop_instance_uid), int(ref.referenced_segment_numbers[0]))
    # One call: highdicom's group lookup is slow (it rebuilds the groups on every call).
    aha_by_code = {(c.value, c.scheme_designator): n for n, c in AHA_SEGMENT_CODES.items()}
    for g in report.get_image_measurement_groups():
        v = _value(g, N_TRANSMURAL_SEGMENTS)
        if v is not None:
            out.n_transmural_segments = int(round(v))
        for site in g.finding_sites:
            number = aha_by_code.get((site.value.value, site.value.scheme_designator))
            if number is not None:
                vals = {"percent_enhanced": _value(g, PERCENT_ENHANCED),
                        "mean_transmurality_percent": _value(g, MEAN_TRANSMURALITY)}
                out.aha[number] = {k: x for k, x in vals.items() if x is not None}
    return out
