"""The stage contract of a job: what every stage gets, and what each hands to the next.

A job runs its stages in order (`node.job.worker`); each stage is called as
``stage(run, data)`` with the job's `JobRun` and the previous stage's output (``None`` for the
first) and returns its own output, one of the small frozen dataclasses below::

    segment job:   load -> LoadedSeries -> segment -> Segmentation -> encode -> EncodedResults
                   -> deliver -> report -> EncodedResults (the PDF) -> deliver
    remeasure job: load_reviewed -> ReviewedSegmentation -> encode -> EncodedResults -> deliver

What a job records for the operator (geometry, model, measurements, objects, timings) goes into
``run.result``; what the next stage computes with goes into the hand-over.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from pydicom.dataset import Dataset
from sqlalchemy.orm import Session, sessionmaker

from models.aha import AhaResult
from models.measurements import Measurements
from models.segment import Quality
from models.volume import Volume
from node.job.queue import Claimed
from node.store.files import FileStore

if TYPE_CHECKING:
    from node.cluster.fetch import PeerFetcher

__all__ = ["JobRun", "OutgoingObject", "LoadedSeries", "Segmentation", "ReviewedSegmentation", "EncodedResults",
           "Deliverable", "Stage"]


@dataclass
class JobRun:
    """One run of a claimed job: the job, where its data live, and the result it records.

    Parameters
    ----------
    job:
        The claimed job (id, series, revision, kind, attempt).
    store_root:
        Root of the node's instance store (relative paths in the index are under it).
    sessions:
        Database sessions.
    files:
        The file store, for stages that write objects (results).
    result:
        What the job records (JSON-serialisable); stages add their keys.
    fetcher:
        In a cluster without shared storage: fetches files held by other nodes before a stage
        reads them (node/cluster/fetch.py); None otherwise.
    """

    job: Claimed
    store_root: Path
    sessions: sessionmaker[Session]
    files: FileStore | None = None
    result: dict[str, Any] = field(default_factory=dict)
    fetcher: PeerFetcher | None = None


@dataclass(frozen=True)
class OutgoingObject:
    """A result object kept in the node's store, ready to be delivered (and re-sent on retry)."""

    kind: str  # seg, sr, pdf
    sop_instance_uid: str
    sop_class_uid: str
    relpath: str  # under the store root


@dataclass(frozen=True)
class LoadedSeries:
    """load -> segment: the series as a volume with its geometry."""

    volume: Volume
    files: tuple[Path, ...]


@dataclass(frozen=True)
class Segmentation:
    """segment -> encode (and report): labels on the volume's grid and what was measured.

    ``aha`` is None when the AHA segments could not be placed (e.g. no myocardium found).
    """

    series_uid: str  # the image series the labels belong to
    volume: Volume
    labels: Any  # numpy.ndarray (slices, rows, cols) uint8, EMIDEC classes
    model_name: str
    model_version: str
    measurements: Measurements
    aha: AhaResult | None
    quality: Quality | None = None  # the model's own confidence; None for a reviewed SEG


@dataclass(frozen=True)
class ReviewedSegmentation(Segmentation):
    """load_reviewed -> encode (remeasure jobs): a radiologist's SEG mapped onto its source series."""

    seg: Dataset | None = None


@dataclass(frozen=True)
class EncodedResults:
    """encode/report -> deliver (and encode -> report): objects stored and ready to send.

    ``datasets`` are the objects as encoded (the report references the SEG and SR);
    ``segmentation`` and ``sources`` are carried on for the report.
    """

    outgoing: tuple[OutgoingObject, ...]
    segmentation: Segmentation
    datasets: tuple[Dataset, ...] = ()
    sources: tuple[Dataset, ...] = ()  # the image datasets the objects reference


class Deliverable(Protocol):
    """Any hand-over with stored objects to send."""

    @property
    def outgoing(self) -> tuple[OutgoingObject, ...]: ...


In = TypeVar("In", contravariant=True)
Out = TypeVar("Out", covariant=True)


class Stage(Protocol[In, Out]):
    """A job stage: ``stage(run, data) -> output``; raises `node.job.errors.PermanentError` for a
    failure that a retry cannot fix, anything else for one it may."""

    def __call__(self, run: JobRun, data: In, /) -> Out: ...
