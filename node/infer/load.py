"""Job stage ``load``: the series' stored instances as a Volume with its geometry."""

from __future__ import annotations

from pathlib import Path
from typing import Any

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


def series_files(sessions: sessionmaker[Session], store_root: Path, series_uid: str) -> list[Path]:
    """The stored image files of a series (non-image objects such as SEG or SR left out)."""
    with sessions() as session:
        rows = session.execute(
            select(Instance.path, Instance.sop_class_uid).where(Instance.series_uid == series_uid)
        ).all()
    return [store_root / p for p, c in rows if c in IMAGE_SOP_CLASSES]


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
        The series has no images or they do not form one volume.
    """
    files = series_files(run.sessions, run.store_root, run.job.series_uid)
    try:
        volume = load_volume(files)
    except (GeometryError, ValueError) as exc:
        raise PermanentError(f"cannot load the series as a volume: {exc}") from exc
    run.result["geometry"] = geometry_summary(volume)
    run.result["n_files"] = len(files)
    return LoadedSeries(volume, tuple(files))
