"""Encode a job's results as DICOM: SEG, TID 1500 SR and an Encapsulated PDF report.

Entry point for the job runner::

    objects = encode_results(source_datasets, labels, volume, measurements, aha, algorithm,
                             job_key=series_uid, created=job_finished_at)

returns ``[seg, sr, pdf]`` (pydicom Datasets, highdicom subclasses). UIDs are derived from
``job_key`` + object kind + algorithm version (`node.encode.uids`), so encoding the same job
again gives the same SOP Instance UIDs; with ``created`` fixed it gives the same bytes too.
`encode_seg_sr` and `encode_report` do the two halves separately, so that SEG + SR can be sent
before the slower PDF is made (the job's ``report`` stage).
"""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

from models.aha import AhaResult
from models.measurements import Measurements
from models.segment import Quality
from models.volume import Volume
from node.encode.algorithm import AlgorithmInfo
from node.encode.numbering import derived_series_number
from node.encode.uids import ObjectUIDs, derive_object_uids

__all__ = [
    "AlgorithmInfo",
    "EncodedObjects",
    "encode_results",
    "encode_seg_sr",
    "encode_report",
    "object_uids",
]


@dataclass(frozen=True)
class EncodedObjects:
    seg: Dataset
    sr: Dataset
    pdf: Dataset | None = None

    def as_list(self) -> list[Dataset]:
        return [ds for ds in (self.seg, self.sr, self.pdf) if ds is not None]


def object_uids(job_key: str, algorithm: AlgorithmInfo, *, uid_prefix: str | None = None
                ) -> dict[str, ObjectUIDs]:
    """The UIDs the objects of this job will have (known before encoding, e.g. for the DB)."""
    return {kind: derive_object_uids(job_key, kind, algorithm.uid_version, prefix=uid_prefix)
            for kind in ("seg", "sr", "pdf")}


def _source_stack_and_uids(source_datasets: Sequence[Dataset], volume: Volume, algorithm: AlgorithmInfo,
                           job_key: str | None, uid_prefix: str | None):  # type: ignore[no-untyped-def]
    """Match the sources to the volume and derive the job's object UIDs (key: the source series by default)."""
    from node.encode.sources import match_sources

    stack = match_sources(source_datasets, volume)
    return stack, object_uids(job_key or stack.series_instance_uid, algorithm, uid_prefix=uid_prefix)


def _stamp(ds: Dataset, when: datetime.datetime | None) -> None:
    """Make the object reproducible: fixed date-times (when ``when`` is given) and UIDs that
    highdicom would otherwise draw at random derived from the object's own SOP Instance UID."""
    if "DimensionOrganizationSequence" in ds:
        dim_uid = str(generate_uid(entropy_srcs=["lgenode-dimension-organization",
                                                 str(ds.SOPInstanceUID)]))
        for seq in ("DimensionOrganizationSequence", "DimensionIndexSequence"):
            for item in ds.get(seq, []):
                item.DimensionOrganizationUID = dim_uid
    if when is None:
        return
    d, t = when.strftime("%Y%m%d"), when.strftime("%H%M%S")
    ds.InstanceCreationDate, ds.InstanceCreationTime = d, t
    if "ContentDate" in ds:
        ds.ContentDate, ds.ContentTime = d, t
    if "SeriesDate" in ds:
        ds.SeriesDate, ds.SeriesTime = d, t
    for item in ds.get("ContributingEquipmentSequence", []):
        if "ContributionDateTime" in item:
            item.ContributionDateTime = when.strftime("%Y%m%d%H%M%S")


def encode_seg_sr(
    source_datasets: Sequence[Dataset],
    labels: np.ndarray,
    volume: Volume,
    measurements: Measurements,
    aha: AhaResult | None,
    algorithm: AlgorithmInfo,
    *,
    job_key: str | None = None,
    created: datetime.datetime | None = None,
    uid_prefix: str | None = None,
    quality: Quality | None = None,
) -> EncodedObjects:
    """SEG and SR (no PDF). ``job_key`` defaults to the source SeriesInstanceUID; ``quality``
    (the model's confidence and review flag) goes into the SR when given."""
    from node.encode.seg import build_segmentation
    from node.encode.sr import build_measurement_report

    stack, uids = _source_stack_and_uids(source_datasets, volume, algorithm, job_key, uid_prefix)
    seg = build_segmentation(source_datasets, labels, volume, algorithm, uids["seg"],
                             series_number=derived_series_number(stack.reference, "seg"))
    _stamp(seg, created)
    sr = build_measurement_report(stack.images, seg, measurements, aha, algorithm, uids["sr"],
                                  series_number=derived_series_number(stack.reference, "sr"),
                                  content_datetime=created, quality=quality)
    _stamp(sr, created)
    return EncodedObjects(seg=seg, sr=sr)


def encode_report(
    source_datasets: Sequence[Dataset],
    labels: np.ndarray,
    volume: Volume,
    measurements: Measurements,
    aha: AhaResult | None,
    algorithm: AlgorithmInfo,
    *,
    derived_from: Sequence[Dataset] = (),
    job_key: str | None = None,
    created: datetime.datetime | None = None,
    uid_prefix: str | None = None,
    quality: Quality | None = None,
) -> Dataset:
    """The Encapsulated PDF report (``derived_from``: the SEG and SR, for its references)."""
    from node.encode.report import build_report

    stack, uids = _source_stack_and_uids(source_datasets, volume, algorithm, job_key, uid_prefix)
    pdf = build_report(stack.images, volume, labels, measurements, aha, algorithm, uids["pdf"],
                       series_number=derived_series_number(stack.reference, "pdf"),
                       derived_from=derived_from, content_datetime=created, quality=quality)
    _stamp(pdf, created)
    return pdf


def encode_results(
    source_datasets: Sequence[Dataset],
    labels: np.ndarray,
    volume: Volume,
    measurements: Measurements,
    aha: AhaResult | None,
    algorithm: AlgorithmInfo,
    *,
    job_key: str | None = None,
    created: datetime.datetime | None = None,
    uid_prefix: str | None = None,
    with_report: bool = True,
    quality: Quality | None = None,
) -> list[Dataset]:
    """``[SEG, SR, PDF]`` for one job (``[SEG, SR]`` when ``with_report`` is false)."""
    objs = encode_seg_sr(source_datasets, labels, volume, measurements, aha, algorithm,
                         job_key=job_key, created=created, uid_prefix=uid_prefix, quality=quality)
    out = [objs.seg, objs.sr]
    if with_report:
        out.append(encode_report(source_datasets, labels, volume, measurements, aha, algorithm,
                                 derived_from=out, job_key=job_key, created=created,
                                 uid_prefix=uid_prefix, quality=quality))
    return out
