"""TID 1500 Measurement Report (Comprehensive 3D SR, highdicom) of the LGE measurements.

Structure of the report (PS3.16 TID 1500, procedure reported "Cardiac MRI"):

- Observation context: a device observer (the node + algorithm; its UID is derived from the
  manufacturer, model and serial number so it is stable across jobs).
- One **volumetric ROI measurement group** (TID 1411) per SEG segment, each referencing its
  segment (`ReferencedSegment`, SEG SOP Instance + segment number, with the source series),
  finding type = the segment's property type, the algorithm identification, and:
    * LV cavity: Volume (ml)
    * LV myocardium: Volume (ml), Mass (g, 1.05 g/ml)
    * infarct: Volume (ml), % of LV myocardial volume
    * MVO: Volume (ml), % of LV myocardial volume
  Each volume is exactly the volume of the referenced segment (voxel count x voxel volume with
  slice *spacing*), so a consumer can recompute it from the SEG.
- One **measurement group** (TID 1501) per covered AHA segment, finding type Myocardial
  infarction, finding site = the CID 3717 segment code, with "% of segment myocardium enhanced"
  and "mean transmural extent of enhancement" (%), plus one group for the whole LV (finding site
  Left Ventricle Myocardium) with the number of segments whose transmurality is > 50 %.
  TID 1501 rather than qualitative evaluations because the values are numbers with units, and
  highdicom reads them back by finding site (``get_image_measurement_groups(finding_site=...)``);
  TID 1501 rather than TID 1411 because an AHA segment is not a SEG segment (no region to
  reference). Segments without myocardium in the slices are left out (not reported as 0).
- Algorithm parameters (TEXT) record how the AHA reference was chosen (the anterior RV insertion
  is unknown without an RV label; the default is a patient direction projected into the slice
  plane, see `models.aha`) and which end is the apex, so a reader of the SR can see it.

The SR's evidence is the source images and the SEG; the document is COMPLETE and
PRELIMINARY (machine output, unverified). Derived percentages use the private scheme
`99LGENODE`, declared in the Coding Scheme Identification Sequence (see `node.encode.codes`).
"""

from __future__ import annotations

import datetime
from collections.abc import Sequence

import highdicom as hd
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes
from pydicom.uid import generate_uid

from models.aha import AhaResult
from models.measurements import Measurements
from models.segment import Quality
from node.encode.algorithm import AlgorithmInfo
from node.encode.codes import (
    AHA_SEGMENT_CODES,
    GRAM,
    INFARCT_PERCENT_SPREAD,
    LV_MYOCARDIUM,
    MASS,
    MEAN_TRANSMURALITY,
    MILLILITER,
    MYOCARDIAL_INFARCTION,
    N_TRANSMURAL_SEGMENTS,
    NEEDS_CAREFUL_REVIEW,
    NO,
    PERCENT,
    PERCENT_ENHANCED,
    PERCENT_OF_LV_MYOCARDIUM,
    PROCEDURE_CARDIAC_MRI,
    QUALITY_SCORE,
    SEGMENT_CONCEPTS,
    SEGMENTS_UNIT,
    UNITLESS,
    VOLUME,
    YES,
    local_coding_scheme,
)
from node.encode.uids import ObjectUIDs

__all__ = ["build_measurement_report", "sr_algorithm", "tracking_uid", "SERIES_DESCRIPTION"]

SERIES_DESCRIPTION = "LGE AI measurements (research use only)"


def tracking_uid(sr_sop_instance_uid: str, key: str) -> str:
    """Stable Tracking UID of one measurement group of one report."""
    return str(generate_uid(entropy_srcs=["lgenode-tracking", sr_sop_instance_uid, key]))


def sr_algorithm(algorithm: AlgorithmInfo, aha: AhaResult | None = None) -> hd.sr.AlgorithmIdentification:
    params = [f"{k}={v}" for k, v in sorted(algorithm.parameters.items())]
    if aha is not None:
        params += [
            f"aha_reference={aha.reference}: {aha.method.get('reference_direction', '')}",
            f"aha_apex_end={aha.apex_end} slice ({aha.apex_end_source})",
        ]
    return hd.sr.AlgorithmIdentification(
        name=algorithm.name, version=algorithm.version, parameters=params or None)


def _segment_measurements(key: str, m: Measurements,
                          algo: hd.sr.AlgorithmIdentification) -> list[hd.sr.Measurement]:
    def meas(name: hd.sr.CodedConcept, value: float, unit: hd.sr.CodedConcept) -> hd.sr.Measurement:
        return hd.sr.Measurement(name=name, value=float(value), unit=unit, algorithm_id=algo)

    if key == "lv_cavity":
        return [meas(VOLUME, m.lv_cavity_ml, MILLILITER)]
    if key == "myocardium":
        return [meas(VOLUME, m.myocardium_ml, MILLILITER), meas(MASS, m.myocardial_mass_g, GRAM)]
    if key == "infarct":
        return [meas(VOLUME, m.infarct_ml, MILLILITER),
                meas(PERCENT_OF_LV_MYOCARDIUM, m.infarct_percent_of_myocardium, PERCENT)]
    if key == "mvo":
        return [meas(VOLUME, m.mvo_ml, MILLILITER),
                meas(PERCENT_OF_LV_MYOCARDIUM, m.mvo_percent_of_myocardium, PERCENT)]
    raise KeyError(key)


def _quality_measurements(key: str, q: Quality, algo: hd.sr.AlgorithmIdentification
                          ) -> list[hd.sr.Measurement]:
    if key == "myocardium":
        return [hd.sr.Measurement(name=QUALITY_SCORE, value=round(float(q.score), 4),
                                  unit=UNITLESS, algorithm_id=algo)]
    if key == "infarct" and q.members > 1:
        return [hd.sr.Measurement(name=INFARCT_PERCENT_SPREAD,
                                  value=round(float(q.infarct_pct_spread), 2), unit=PERCENT,
                                  algorithm_id=algo)]
    return []


def _quality_evaluations(q: Quality) -> list[hd.sr.QualitativeEvaluation]:
    return [hd.sr.QualitativeEvaluation(NEEDS_CAREFUL_REVIEW, YES if q.needs_review else NO)]


def _aha_groups(aha: AhaResult, algo: hd.sr.AlgorithmIdentification,
                sr_uid: str) -> list[hd.sr.MeasurementsAndQualitativeEvaluations]:
    groups = []
    for s in aha.segments:
        if not s.covered:
            continue
        # The algorithm is identified once per group (not per measurement): 17 groups with
        # per-measurement algorithm items doubled highdicom's SR build time.
        measurements = [hd.sr.Measurement(
            name=PERCENT_ENHANCED, value=float(s.percent_enhanced or 0.0), unit=PERCENT)]
        if s.mean_transmurality_percent is not None:
            measurements.append(hd.sr.Measurement(
                name=MEAN_TRANSMURALITY, value=float(s.mean_transmurality_percent), unit=PERCENT))
        groups.append(hd.sr.MeasurementsAndQualitativeEvaluations(
            tracking_identifier=hd.sr.TrackingIdentifier(
                uid=tracking_uid(sr_uid, f"aha-{s.number}"),
                identifier=f"AHA segment {s.number} ({s.name})"),
            finding_type=MYOCARDIAL_INFARCTION,
            finding_sites=[hd.sr.FindingSite(AHA_SEGMENT_CODES[s.number])],
            algorithm_id=algo,
            measurements=measurements,
        ))
    groups.append(hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(
            uid=tracking_uid(sr_uid, "aha-summary"), identifier="AHA 17-segment summary"),
        finding_type=MYOCARDIAL_INFARCTION,
        finding_sites=[hd.sr.FindingSite(LV_MYOCARDIUM)],
        algorithm_id=algo,
        measurements=[hd.sr.Measurement(
            name=N_TRANSMURAL_SEGMENTS, value=float(aha.n_transmural_segments),
            unit=SEGMENTS_UNIT)],
    ))
    return groups


def device_observer_uid(algorithm: AlgorithmInfo) -> str:
    return str(generate_uid(entropy_srcs=[
        "lgenode-device", algorithm.manufacturer, algorithm.model_name,
        algorithm.device_serial_number]))


def build_measurement_report(
    source_datasets: Sequence[Dataset],
    seg: Dataset,
    measurements: Measurements,
    aha: AhaResult | None,
    algorithm: AlgorithmInfo,
    uids: ObjectUIDs,
    *,
    series_number: int,
    instance_number: int = 1,
    series_description: str = SERIES_DESCRIPTION,
    content_datetime: datetime.datetime | None = None,
    quality: Quality | None = None,
) -> hd.sr.Comprehensive3DSR:
    """The TID 1500 report; ``seg`` is the SEG built from the same labels. ``quality``: the
    model's confidence (score in the myocardium group, the review flag as its qualitative
    evaluation, the ensemble's infarct-% spread in the infarct group)."""
    algo = sr_algorithm(algorithm, aha)
    observer = hd.sr.ObserverContext(
        observer_type=codes.DCM.Device,
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
            uid=device_observer_uid(algorithm),
            name=algorithm.name,
            manufacturer_name=algorithm.manufacturer,
            model_name=algorithm.model_name,
            serial_number=algorithm.device_serial_number,
        ),
    )
    sr_uid = uids.sop_instance_uid
    source_series = hd.sr.SourceSeriesForSegmentation(str(source_datasets[0].SeriesInstanceUID))
    groups: list = []
    for c in SEGMENT_CONCEPTS:
        groups.append(hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations(
            tracking_identifier=hd.sr.TrackingIdentifier(
                uid=tracking_uid(sr_uid, f"segment-{c.number}"), identifier=c.label),
            referenced_segment=hd.sr.ReferencedSegment(
                sop_class_uid=str(seg.SOPClassUID),
                sop_instance_uid=str(seg.SOPInstanceUID),
                segment_number=c.number,
                source_series=source_series,
            ),
            finding_type=c.property_type,
            finding_category=c.category,
            algorithm_id=algo,
            measurements=_segment_measurements(c.key, measurements, algo)
            + (_quality_measurements(c.key, quality, algo) if quality is not None else []),
            qualitative_evaluations=(_quality_evaluations(quality)
                                     if quality is not None and c.key == "myocardium" else None),
        ))
    if aha is not None:
        groups.extend(_aha_groups(aha, algo, sr_uid))
    report = hd.sr.MeasurementReport(
        observation_context=hd.sr.ObservationContext(observer_device_context=observer),
        procedure_reported=PROCEDURE_CARDIAC_MRI,
        imaging_measurements=groups,
    )
    sr = hd.sr.Comprehensive3DSR(
        evidence=[*source_datasets, seg],
        content=report[0],
        series_instance_uid=uids.series_instance_uid,
        series_number=series_number,
        sop_instance_uid=sr_uid,
        instance_number=instance_number,
        manufacturer=algorithm.manufacturer,
        is_complete=True,
        is_final=False,
        is_verified=False,
        coding_schemes=[local_coding_scheme()],
        manufacturer_model_name=algorithm.model_name,
        software_versions=algorithm.software_version,
        device_serial_number=algorithm.device_serial_number,
        series_description=series_description[:64],
    )
    if content_datetime is not None:
        # Fixed content date/time: re-encoding the same job gives the same bytes.
        sr.ContentDate = content_datetime.strftime("%Y%m%d")
        sr.ContentTime = content_datetime.strftime("%H%M%S")
    return sr
