"""Job stage ``load``: the series' stored instances as a Volume with its geometry."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydicom import dcmread
from pydicom.dataset import Dataset
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from models.io.dicom_series import load_dicom_series
from models.io.errors import GeometryError
from models.volume import Volume
from node.db.models import Instance
from node.job.errors import PermanentError
from node.job.handover import JobRun, LoadedSeries
from node.receive.contexts import IMAGE_SOP_CLASSES

if TYPE_CHECKING:
    from node.cluster.fetch import PeerFetcher


def series_files(sessions: sessionmaker[Session], store_root: Path, series_uid: str, *,
                 images_only: bool = True, fetcher: PeerFetcher | None = None) -> list[Path]:
    """The stored image files of a series (non-image objects such as SEG or SR left out unless
    ``images_only`` is false). With ``fetcher`` (a cluster without shared storage), files held by
    another node are first fetched into this node's store."""
    with sessions() as session:
        rows = [r for r in session.execute(select(Instance).where(Instance.series_uid == series_uid)).scalars()
                if not images_only or r.sop_class_uid in IMAGE_SOP_CLASSES]
    if fetcher is not None:
        from node.cluster.fetch import IndexedFile

        fetcher.ensure_local([IndexedFile.of(r) for r in rows])
    return [store_root / r.path for r in rows]


def read_sources(sessions: sessionmaker[Session], store_root: Path, series_uid: str) -> list[Dataset]:
    """The stored image datasets of a series, fully read (the encoders need their attributes)."""
    return [dcmread(p) for p in series_files(sessions, store_root, series_uid)]


def load_volume(files: list[Path]) -> Volume:
    """The image files as one volume.

    Raises
    ------
    ValueError
        No files.
    models.io.errors.GeometryError
        The images do not form one stack (orientation, spacing, matrix).
    """
    if not files:
        raise ValueError("the series has no stored image instances")
    return load_dicom_series(files)


def geometry_summary(volume: Volume) -> dict[str, Any]:
    """What a job records about the loaded volume (identifiers and geometry only)."""
    return {
        "shape": list(volume.shape),
        "pixel_spacing_mm": [float(v) for v in volume.pixel_spacing],
        "slice_spacing_mm": None if volume.slice_spacing is None else float(volume.slice_spacing),
        "slice_thickness_mm": None if volume.slice_thickness is None else float(volume.slice_thickness),
        "row_direction": [float(v) for v in volume.row_direction],
        "column_direction": [float(v) for v in volume.column_direction],
        "normal": [float(v) for v in volume.normal],
        "slice_positions_mm": [[float(v) for v in p] for p in volume.positions],
    }


def stage_load(run: JobRun, _: None = None) -> LoadedSeries:
    """Load the job's series; records its geometry and file count in the job's result.

    Raises
    ------
    PermanentError
        The series has no images or they do not form one volume, or (cluster) a file's owner is unknown.
    node.cluster.fetch.PeerUnavailable
        (cluster) The node holding some of the files cannot be reached: the job is retried.
    """
    files = series_files(run.sessions, run.store_root, run.job.series_uid, fetcher=run.fetcher)
    try:
        volume = load_volume(files)
    except (GeometryError, ValueError) as exc:
        raise PermanentError(f"cannot load the series as a volume: {exc}") from exc
    run.result["geometry"] = geometry_summary(volume)
    run.result["n_files"] = len(files)
    return LoadedSeries(volume, tuple(files))
