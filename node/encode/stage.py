"""Job stages ``encode`` (SEG + SR) and ``report`` (Encapsulated PDF), and the SR of a reviewed SEG.

The objects are written durably under the store root (like received instances) and indexed, so
a delivery retry, even after a restart, re-sends exactly these files. UIDs are derived from the
series, its revision and the algorithm version, so re-running a job re-creates the same objects
rather than new copies.

The report is its own stage, after SEG + SR have been delivered: the PDF (matplotlib) is the
slowest object and not needed to review the result, so it stays off the path to the PACS, and a
report failure is recorded as one (stage ``report``), not as a delivery failure.
"""

from __future__ import annotations

import time

from pydicom.dataset import Dataset

from node.encode import AlgorithmInfo, encode_report, encode_seg_sr
from node.encode.sources import match_sources
from node.encode.sr import build_measurement_report
from node.encode.store import listed, store_result
from node.encode.uids import derive_object_uids
from node.infer.load import read_sources
from node.job.handover import EncodedResults, JobRun, ReviewedSegmentation, Segmentation

REVIEWED_SR_DESCRIPTION = "LGE AI measurements (reviewed SEG)"


def _job_key(run: JobRun) -> str:
    return f"{run.job.series_uid}/r{run.job.revision}"


class EncodeStage:
    """Encodes the segmentation as DICOM SEG + TID 1500 SR and stores both."""

    def warm(self) -> None:
        """Import the encoders (highdicom SEG/SR) so the first job does not pay for it."""
        import node.encode.seg  # noqa: F401
        import node.encode.sr  # noqa: F401

    def __call__(self, run: JobRun, seg: Segmentation) -> EncodedResults:
        """Encode and store SEG + SR of ``seg`` (source images read from the store).

        Returns
        -------
        EncodedResults
            The stored SEG and SR (to deliver), their datasets and the sources (for the report).
        """
        assert run.files is not None
        timings: dict[str, float] = {}
        t = time.perf_counter()
        sources = read_sources(run.sessions, run.store_root, seg.series_uid)
        timings["read_sources"] = time.perf_counter() - t
        algorithm = AlgorithmInfo(name=seg.model_name, version=seg.model_version)
        t = time.perf_counter()
        objs = encode_seg_sr(sources, seg.labels, seg.volume, seg.measurements, seg.aha, algorithm,
                             job_key=_job_key(run), quality=seg.quality)
        timings["seg_sr"] = time.perf_counter() - t
        t = time.perf_counter()
        outgoing = (store_result(run.files, run.sessions, "seg", objs.seg),
                    store_result(run.files, run.sessions, "sr", objs.sr))
        timings["store"] = time.perf_counter() - t
        run.result["objects"] = [listed(o) for o in outgoing]
        run.result["encode_timings_s"] = {k: round(v, 4) for k, v in timings.items()}
        return EncodedResults(outgoing, seg, (objs.seg, objs.sr), tuple(sources))


class ReportStage:
    """Encodes the readable report (Encapsulated PDF, referencing the SEG and SR) and stores it."""

    def warm(self) -> None:
        """Import the report's libraries (matplotlib) so the first job does not pay for it."""
        import node.encode.report  # noqa: F401

    def __call__(self, run: JobRun, encoded: EncodedResults) -> EncodedResults:
        """Encode and store the PDF report of ``encoded.segmentation``, referencing ``encoded.datasets``.

        Returns
        -------
        EncodedResults
            The stored PDF alone (the SEG and SR were delivered already).
        """
        assert run.files is not None
        seg = encoded.segmentation
        sources: list[Dataset] = list(encoded.sources) or read_sources(run.sessions, run.store_root, seg.series_uid)
        algorithm = AlgorithmInfo(name=seg.model_name, version=seg.model_version)
        t = time.perf_counter()
        pdf = encode_report(sources, seg.labels, seg.volume, seg.measurements, seg.aha, algorithm,
                            derived_from=encoded.datasets, job_key=_job_key(run),
                            quality=seg.quality)
        t_encode = time.perf_counter() - t
        t = time.perf_counter()
        stored = store_result(run.files, run.sessions, "pdf", pdf)
        run.result.setdefault("objects", []).append(listed(stored))
        run.result["report_timings_s"] = {"encode": round(t_encode, 4), "store": round(time.perf_counter() - t, 4)}
        return EncodedResults((stored,), seg, (pdf,), encoded.sources)


def stage_encode_reviewed_sr(run: JobRun, reviewed: ReviewedSegmentation) -> EncodedResults:
    """A TID 1500 SR of the re-measured values, referencing the reviewed SEG's segments; stored."""
    seg = reviewed.seg
    assert seg is not None and run.files is not None
    algorithm = AlgorithmInfo(name=reviewed.model_name, version=reviewed.model_version)
    sources = read_sources(run.sessions, run.store_root, reviewed.series_uid)
    stack = match_sources(sources, reviewed.volume)
    uids = derive_object_uids(str(seg.SOPInstanceUID), "sr", algorithm.uid_version)
    sr = build_measurement_report(stack.images, seg, reviewed.measurements, reviewed.aha, algorithm, uids,
                                  series_number=int(seg.get("SeriesNumber") or 9900) + 1,
                                  series_description=REVIEWED_SR_DESCRIPTION)
    stored = store_result(run.files, run.sessions, "sr", sr)
    run.result["objects"] = [listed(stored)]
    return EncodedResults((stored,), reviewed, (sr,), tuple(sources))
