"""Stages of a ``remeasure`` job: a reviewed SEG -> measurements -> a new SR referencing it."""

from __future__ import annotations

from typing import Any

from models.aha import compute_aha
from models.measurements import compute_measurements
from node.infer.load import load_volume, read_sources, series_files
from node.infer.reviewed_seg import classify_stored, labels_from_seg

SR_DESCRIPTION = "LGE AI measurements (reviewed SEG)"


def stage_load_reviewed(ctx: Any) -> None:
    from node.job.worker import PermanentError

    with ctx.sessions() as s:
        verdict, seg = classify_stored(s, ctx.store_root, ctx.job.series_uid)
    if seg is None or not verdict.reviewed or verdict.source_series_uid is None:
        raise PermanentError(verdict.reason)
    try:
        ctx.volume = load_volume(series_files(ctx.sessions, ctx.store_root, verdict.source_series_uid))
        ctx.labels = labels_from_seg(seg, ctx.volume)
    except ValueError as exc:
        raise PermanentError(f"cannot map the reviewed SEG onto its source series: {exc}") from exc
    ctx.seg = seg
    ctx.source_series_uid = verdict.source_series_uid
    ctx.measurements = compute_measurements(ctx.labels, ctx.volume)
    try:
        ctx.aha = compute_aha(ctx.labels, ctx.volume)
    except ValueError as exc:
        ctx.aha = None
        ctx.result["aha_error"] = str(exc)
    ctx.result.update({"reviewed_seg": {"sop_instance_uid": str(seg.SOPInstanceUID),
                                        "series_uid": str(seg.SeriesInstanceUID),
                                        "content_creator": str(seg.get("ContentCreatorName", "") or "")},
                       "source_series_uid": verdict.source_series_uid,
                       "measurements": ctx.measurements.to_dict()})
    if ctx.aha is not None:
        ctx.result["aha"] = ctx.aha.to_dict()


def stage_encode_reviewed_sr(ctx: Any) -> None:
    from node.encode.algorithm import AlgorithmInfo
    from node.encode.sources import match_sources
    from node.encode.sr import build_measurement_report
    from node.encode.store import store_result
    from node.encode.uids import derive_object_uids

    seg = ctx.seg
    seg_item = seg.SegmentSequence[0]
    algo_seq = seg_item.get("SegmentationAlgorithmIdentificationSequence")
    if algo_seq:
        name, version = str(algo_seq[0].AlgorithmName), str(algo_seq[0].AlgorithmVersion)
    else:
        name, version = str(seg_item.get("SegmentAlgorithmName", "manual")), "n/a"
    algorithm = AlgorithmInfo(name=name, version=version)
    sources = read_sources(ctx.sessions, ctx.store_root, ctx.source_series_uid)
    stack = match_sources(sources, ctx.volume)
    uids = derive_object_uids(str(seg.SOPInstanceUID), "sr", algorithm.uid_version)
    sr = build_measurement_report(stack.images, seg, ctx.measurements, ctx.aha, algorithm, uids,
                                  series_number=int(seg.get("SeriesNumber") or 9900) + 1,
                                  series_description=SR_DESCRIPTION)
    ctx.outgoing = [store_result(ctx.files, ctx.sessions, "sr", sr)]
    ctx.result["objects"] = [{"kind": "sr", "sop_instance_uid": ctx.outgoing[0].sop_instance_uid,
                              "series_uid": str(sr.SeriesInstanceUID)}]
