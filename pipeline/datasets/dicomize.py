"""MyoPS NIfTI cases as DICOM MR studies (``lgenode pipeline to-dicom``).

The pixels are the real MyoPS pixels and the geometry is the real oblique short-axis geometry of
the NIfTI affine (through `models.io.nifti.load_nifti`, so DICOM and NIfTI agree by
construction); the files are written by `dicomstudy.write` (classic or Enhanced MR). The
identifiers are synthetic (``PatientID`` = ``MYOPS-<case>``, no names or dates of birth); with
``seed`` set, reruns produce byte-identical files.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from dicomstudy.write import (
    ENHANCED_MR_IMAGE_STORAGE,
    MR_IMAGE_STORAGE,
    SeriesKind,
    StudyContext,
    enhanced_mr_dataset,
    resample_inplane,
    series_datasets,
    write_enhanced_series,
    write_series,
    write_stack_series,
)
from models.io.nifti import load_nifti
from models.volume import Volume
from pipeline.datasets.paths import myops_dir

__all__ = [
    "MR_IMAGE_STORAGE",
    "ENHANCED_MR_IMAGE_STORAGE",
    "SeriesKind",
    "StudyContext",
    "DicomizedCase",
    "myops_context",
    "resolve_case",
    "resample_inplane",
    "series_datasets",
    "enhanced_mr_dataset",
    "write_series",
    "write_enhanced_series",
    "dicomize_case",
    "dicomize_nifti",
    "make_benchmark_series",
]

log = logging.getLogger(__name__)

MYOPS_SOURCE = "the MyoPS 2020 challenge"


def myops_context(case_id: str, seed: int | None = None) -> StudyContext:
    """The identifiers of a dicomized MyoPS case (``PatientID`` ``MYOPS-<case>``)."""
    return StudyContext(case_id, seed=seed, patient_prefix="MYOPS", source=MYOPS_SOURCE,
                        model_name="MyoPS dicomizer")


@dataclass
class DicomizedCase:
    case_id: str
    lge_files: list[Path]
    cine_files: list[Path] = field(default_factory=list)
    lge_volume: Volume | None = None
    cine_volume: Volume | None = None


# --------------------------------------------------------------------------- inputs


def resolve_case(case_or_nifti: str | os.PathLike[str], data_dir: str | os.PathLike[str] | None = None,
                 suffix: str = "LGE") -> Path:
    """``Case3001`` (looked up in the MyoPS folder) or a path to a NIfTI file."""
    p = Path(case_or_nifti)
    if p.suffix in (".gz", ".nii") or p.exists():
        if not p.is_file():
            raise FileNotFoundError(f"{p} not found")
        return p
    base = myops_dir(data_dir)
    found = sorted(base.glob(f"{case_or_nifti}_{suffix}.nii*"))
    if not found:
        raise FileNotFoundError(f"{case_or_nifti}_{suffix}.nii.gz not found in {base}")
    return found[0]


# --------------------------------------------------------------------------- whole cases


def _prepare(path: Path, matrix: int | tuple[int, int] | None) -> Volume:
    vol = load_nifti(path)
    if matrix is not None:
        rows, cols = (matrix, matrix) if isinstance(matrix, int) else matrix
        vol = resample_inplane(vol, rows, cols)
    return vol


def _case_id(path: Path) -> str:
    name = path.name.split(".")[0]
    return name.rsplit("_", 1)[0] if "_" in name else name


def dicomize_nifti(nifti: str | os.PathLike[str], out_dir: str | os.PathLike[str], *,
                   kind: SeriesKind = "lge", matrix: int | tuple[int, int] | None = None,
                   enhanced: bool = False, seed: int | None = None,
                   ctx: StudyContext | None = None) -> tuple[list[Path], Volume]:
    """One NIfTI file -> one DICOM series in ``out_dir``; returns (files, the volume written)."""
    path = Path(nifti)
    vol = _prepare(path, matrix)
    ctx = ctx or myops_context(_case_id(path), seed)
    writer = write_enhanced_series if enhanced else write_series
    return writer(vol, out_dir, ctx, kind), vol


def dicomize_case(case_or_nifti: str | os.PathLike[str], out_dir: str | os.PathLike[str], *,
                  matrix: int | tuple[int, int] | None = None, enhanced: bool = False,
                  seed: int | None = None, with_cine: bool = True,
                  data_dir: str | os.PathLike[str] | None = None) -> DicomizedCase:
    """A MyoPS case (``Case3001`` or a path to its ``_LGE`` NIfTI) -> DICOM study.

    Writes ``out_dir/LGE_SAX/`` and, when ``with_cine`` and the ``_C0`` file exists beside the
    LGE, ``out_dir/CINE_SAX/``: two series of one study sharing one frame of reference.
    A NIfTI path whose name ends in ``_C0`` is written as a cine series alone.
    """
    lge_path = resolve_case(case_or_nifti, data_dir)
    case_id = _case_id(lge_path)
    ctx = myops_context(case_id, seed)
    out = Path(out_dir)
    if lge_path.name.split(".")[0].endswith("_C0"):
        files, vol = dicomize_nifti(lge_path, out / "CINE_SAX", kind="cine", matrix=matrix,
                                    enhanced=enhanced, ctx=ctx)
        return DicomizedCase(case_id, [], files, None, vol)
    lge_files, lge_vol = dicomize_nifti(lge_path, out / "LGE_SAX", kind="lge", matrix=matrix,
                                        enhanced=enhanced, ctx=ctx)
    result = DicomizedCase(case_id, lge_files, lge_volume=lge_vol)
    cine_path = lge_path.with_name(lge_path.name.replace("_LGE", "_C0"))
    if with_cine and cine_path != lge_path and cine_path.is_file():
        result.cine_files, result.cine_volume = dicomize_nifti(
            cine_path, out / "CINE_SAX", kind="cine", matrix=matrix, enhanced=enhanced, ctx=ctx
        )
    log.info("dicomized %s: %d LGE, %d cine files", case_id, len(result.lge_files), len(result.cine_files))
    return result


# --------------------------------------------------------------------------- benchmark


def make_benchmark_series(n: int = 500, rows: int = 256, cols: int = 256,
                          out_dir: str | os.PathLike[str] = "bench-series", *,
                          cases: Sequence[str] | None = None, seed: int | None = 0,
                          slice_spacing: float = 1.0,
                          data_dir: str | os.PathLike[str] | None = None) -> list[Path]:
    """Write one classic MR series of ``n`` slices with distinct SOP Instance UIDs, quickly.

    The pixels cycle through the real MyoPS LGE slices of ``cases`` (default: every case found)
    resampled to ``rows x cols``; the geometry is the first case's orientation with ``n``
    positions ``slice_spacing`` mm apart, so the result is one valid stack that
    `load_dicom_series` accepts. One template dataset is updated in place per slice to keep
    writing cheap (a few ms per file).
    """
    base = myops_dir(data_dir)
    paths = [resolve_case(c, data_dir) for c in cases] if cases else sorted(base.glob("Case*_LGE.nii*"))
    if not paths:
        raise FileNotFoundError(f"no MyoPS LGE files in {base}")
    slices: list[np.ndarray] = []
    first: Volume | None = None
    for p in paths:
        vol = _prepare(p, (rows, cols))
        first = first or vol
        slices.extend(vol.pixels)
        if len(slices) >= n:
            break
    assert first is not None
    return write_stack_series(slices, first, n, out_dir, myops_context(f"BENCH{n}", seed),
                              slice_spacing=slice_spacing)
