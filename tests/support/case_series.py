"""A DICOM MR series on disk with its ground-truth labels: synthetic, or a real MyoPS case.

`build_synthetic_series` writes the synthetic LGE study of `dicomstudy.synthetic` (runs
anywhere; all four classes present). `build_case_series` is the real-data tier: the series is
built by `pipeline.datasets.dicomize` (real pixels, real oblique geometry); the labels are the
MyoPS ground truth mapped to EMIDEC classes (500->1, 200/1220->2, 2221->3). MyoPS has no MVO
class, so `with_mvo=True` relabels the core of the infarct (infarct voxels more than 2 px from
any non-infarct voxel, in-plane) as MVO (4), so that all four SEG segments are exercised.
Either is read back with `models.io.load_dicom_series`, exactly as the node would read it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset

from models.volume import Volume
from tests.support.require import missing


def _myops_dir() -> Path:
    from pipeline.datasets.paths import myops_dir  # the project's one rule for where data live

    return myops_dir()


def have_case(case: str) -> bool:
    return (_myops_dir() / f"{case}_gd.nii.gz").is_file() and (_myops_dir() / f"{case}_LGE.nii.gz").is_file()


@dataclass
class CaseSeries:
    case: str
    files: list[Path]
    datasets: list[Dataset]
    volume: Volume  # as loaded from the DICOM files (with source_refs)
    labels: np.ndarray  # (n, rows, cols) uint8 in volume order


def _carve_mvo(labels: np.ndarray) -> np.ndarray:
    from scipy.ndimage import distance_transform_edt

    out = labels.copy()
    for k in range(labels.shape[0]):
        inf = labels[k] == 3
        if inf.any():
            out[k][(distance_transform_edt(inf) > 2.0) & inf] = 4
    return out


def build_case_series(case: str, out_dir: Path, *, with_mvo: bool = True, enhanced: bool = False,
                      seed: int = 7) -> CaseSeries:
    if not have_case(case):
        missing("data", f"MyoPS {case} not found under {_myops_dir()} (set LGENODE_DATA_DIR)")
    from models.io import load_dicom_series
    from models.io.nifti import load_nifti
    from pipeline.datasets.dicomize import StudyContext, write_enhanced_series, write_series
    from pipeline.datasets.myops import map_labels

    image = load_nifti(_myops_dir() / f"{case}_LGE.nii.gz")
    gd = load_nifti(_myops_dir() / f"{case}_gd.nii.gz")
    writer = write_enhanced_series if enhanced else write_series
    files = writer(image, out_dir, StudyContext(case, seed=seed))
    volume = load_dicom_series(out_dir)
    if not np.allclose(volume.positions, gd.positions, atol=1e-3):
        raise AssertionError("DICOM and NIfTI slice order differ")
    labels = map_labels(np.rint(gd.pixels).astype(np.int32))
    if with_mvo:
        labels = _carve_mvo(labels)
    datasets = [pydicom.dcmread(f) for f in files]
    return CaseSeries(case, list(files), datasets, volume, labels)


def build_synthetic_series(out_dir: Path, *, enhanced: bool = False, seed: int = 7, phantom=None,  # type: ignore[no-untyped-def]
                           ) -> CaseSeries:
    """The synthetic LGE series (`dicomstudy.synthetic`) with its labels, as the node reads it."""
    from dicomstudy.synthetic import write_synthetic_study
    from models.io import load_dicom_series

    study = write_synthetic_study(out_dir, seed=seed, phantom=phantom, with_cine=False, enhanced=enhanced)
    volume = load_dicom_series(study.lge_dir)
    if not np.allclose(volume.positions, study.lge_volume.positions, atol=1e-3):
        raise AssertionError("the synthetic series was read back in another slice order")
    datasets = [pydicom.dcmread(f) for f in study.lge_files]
    return CaseSeries(f"synthetic-{seed}", list(study.lge_files), datasets, volume, study.labels)


def encode_case(series: CaseSeries, algorithm, created=None, with_report: bool = True,
                quality=None):
    """Measurements, AHA result and the encoded [SEG, SR, (PDF)] of a case series."""
    from models.aha import compute_aha
    from models.measurements import compute_measurements
    from node.encode import encode_results

    m = compute_measurements(series.labels, series.volume)
    aha = compute_aha(series.labels, series.volume)
    objects = encode_results(series.datasets, series.labels, series.volume, m, aha, algorithm,
                             created=created, with_report=with_report, quality=quality)
    return m, aha, objects
