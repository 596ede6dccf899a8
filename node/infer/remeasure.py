"""First stage of a ``remeasure`` job: a reviewed SEG -> labels on its source volume -> measurements.

The job goes on with `node.encode.stage.stage_encode_reviewed_sr` (a new SR referencing the SEG).
"""

from __future__ import annotations

from models.aha import compute_aha
from models.measurements import compute_measurements
from node.infer.load import load_volume, series_files
from node.infer.reviewed_seg import classify_stored, labels_from_seg
from node.job.errors import PermanentError
from node.job.handover import JobRun, ReviewedSegmentation


def stage_load_reviewed(run: JobRun, _: None = None) -> ReviewedSegmentation:
    """The job's reviewed SEG as labels on its source series' volume, measured.

    Raises
    ------
    PermanentError
        The SEG is not a reviewed SEG of a processed series, or it does not map onto that series.
    """
    # In a cluster the SEG and its source images may be on other nodes: fetch them first.
    series_files(run.sessions, run.store_root, run.job.series_uid, images_only=False, fetcher=run.fetcher)
    with run.sessions() as s:
        verdict, seg = classify_stored(s, run.store_root, run.job.series_uid)
    if seg is None or not verdict.reviewed or verdict.source_series_uid is None:
        raise PermanentError(verdict.reason)
    try:
        volume = load_volume(series_files(run.sessions, run.store_root, verdict.source_series_uid,
                                          fetcher=run.fetcher))
        labels = labels_from_seg(seg, volume)
    except ValueError as exc:
        raise PermanentError(f"cannot map the reviewed SEG onto its source series: {exc}") from exc
    measurements = compute_measurements(labels, volume)
    try:
        aha = compute_aha(labels, volume)
    except ValueError as exc:
        aha = None
        run.result["aha_error"] = str(exc)
    name, version = _algorithm(seg)
    run.result.update({"reviewed_seg": {"sop_instance_uid": str(seg.SOPInstanceUID),
                                        "series_uid": str(seg.SeriesInstanceUID),
                                        "content_creator": str(seg.get("ContentCreatorName", "") or "")},
                       "source_series_uid": verdict.source_series_uid,
                       "measurements": measurements.to_dict()})
    if aha is not None:
        run.result["aha"] = aha.to_dict()
    return ReviewedSegmentation(verdict.source_series_uid, volume, labels, name, version, measurements, aha, seg=seg)


def _algorithm(seg) -> tuple[str, str]:  # type: ignore[no-untyped-def]
    """(name, version) of the algorithm the reviewed SEG names (the AI's, kept by the viewer)."""
    item = seg.SegmentSequence[0]
    algo_seq = item.get("SegmentationAlgorithmIdentificationSequence")
    if algo_seq:
        return str(algo_seq[0].AlgorithmName), str(algo_seq[0].AlgorithmVersion)
    return str(item.get("SegmentAlgorithmName", "manual")), "n/a"
