"""Load one DICOM image series (single-frame or Enhanced multi-frame) as a `Volume`.

The loader is the first stage of every job, so it is strict: a set of files that is not one
clean stack of parallel, evenly spaced slices raises `GeometryError` with a message an operator
can act on, instead of producing a volume with silently wrong geometry.

Supported objects: any single-frame image with Image Plane attributes (MR Image Storage
1.2.840.10008.5.1.4.1.1.4 is the target; CT works the same way) and multi-frame objects with
functional groups (Enhanced MR 1.2.840.10008.5.1.4.1.1.4.1, Legacy Converted Enhanced MR
...4.4), reading PlanePosition/PlaneOrientation/PixelMeasures/PixelValueTransformation from the
per-frame groups and falling back to the shared groups.

Duplicate positions (several phases, inversion times or image types at one location) are an
error by default: which image to segment is a clinical choice the node must not guess. Callers
that know better pass ``duplicates="first"``, which keeps, at each position, the image with the
lowest (InstanceNumber, frame number, SOPInstanceUID), so the choice is deterministic. The same
instance received twice (same SOPInstanceUID and frame) is not a duplicate position; it is
silently collapsed.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError

from models.io.errors import GeometryError
from models.volume import Volume

__all__ = ["GeometryError", "load_dicom_series", "MR_IMAGE_STORAGE", "ENHANCED_MR_IMAGE_STORAGE"]

log = logging.getLogger(__name__)

MR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.4"
ENHANCED_MR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.4.1"

# Identical positions closer than this along the normal are "the same location".
_DUPLICATE_TOL_MM = 0.01
# |row_a . row_b| and |col_a . col_b| must stay above cos(tolerance).
_DEFAULT_ORIENTATION_TOL_DEG = 0.5


@dataclass
class _Frame:
    """Header facts of one 2-D image (a single-frame instance or one frame of a multi-frame)."""

    ds_index: int
    frame_index: int | None  # 0-based index into a multi-frame's frames; None for single-frame
    sop_uid: str
    instance_number: int
    position: np.ndarray
    row_dir: np.ndarray
    col_dir: np.ndarray
    pixel_spacing: tuple[float, float]
    thickness: float | None
    slope: float
    intercept: float


def load_dicom_series(
    paths: Sequence[Path | str] | Path | str,
    *,
    duplicates: Literal["error", "first"] = "error",
    orientation_tol_deg: float = _DEFAULT_ORIENTATION_TOL_DEG,
    inplane_tol_mm: float | None = None,
    spacing_rtol: float = 0.02,
    spacing_atol_mm: float = 0.05,
) -> Volume:
    """Read one series into a `Volume` sorted along the slice normal.

    ``paths`` is a folder (read recursively; non-DICOM files and non-image objects are skipped),
    a single file (e.g. one Enhanced MR instance) or a list of files (each must be DICOM).
    Tolerances: slice orientations may differ by ``orientation_tol_deg``; slice positions may
    leave the line along the normal by ``inplane_tol_mm`` (default: a tenth of the smallest
    pixel spacing); gaps between slices may differ from their median by
    ``max(spacing_atol_mm, spacing_rtol * median)``. The largest deviation is recorded in
    ``meta["slice_spacing_max_deviation_mm"]``.

    Pixels are float32 after RescaleSlope/RescaleIntercept (per frame for multi-frame).
    """
    datasets, names = _read_datasets(paths)
    datasets, names = _image_datasets(datasets, names)
    _check_single_series(datasets)

    frames: list[_Frame] = []
    for k, ds in enumerate(datasets):
        frames.extend(_frames_of(ds, k, names[k]))
    frames, n_repeats = _drop_repeated_instances(frames)
    _check_matrix(datasets, frames, names)

    row_dir, col_dir, normal = _reference_orientation(frames[0])
    _check_orientation(frames, row_dir, col_dir, orientation_tol_deg, names)

    frames, n_dropped = _sort_and_resolve_duplicates(frames, normal, duplicates)
    positions = np.array([f.position for f in frames], dtype=np.float64)
    spacing = frames[0].pixel_spacing
    tol_inplane = inplane_tol_mm if inplane_tol_mm is not None else 0.1 * min(spacing)
    _check_collinear(positions, normal, tol_inplane)
    slice_spacing, max_dev = _check_spacing(positions, normal, spacing_rtol, spacing_atol_mm)

    pixels = _stack_pixels(datasets, frames)
    first = datasets[frames[0].ds_index]
    meta: dict[str, object] = {
        key: str(first[key].value) if key in first else None
        for key in (
            "StudyInstanceUID",
            "SeriesInstanceUID",
            "FrameOfReferenceUID",
            "Modality",
            "SeriesDescription",
            "SOPClassUID",
        )
    }
    meta.update(
        spacing_known=True,
        multiframe=any(f.frame_index is not None for f in frames),
        n_instances=len(datasets),
        slice_spacing_max_deviation_mm=max_dev,
        duplicates_dropped=n_dropped,
        repeated_instances_dropped=n_repeats,
        photometric_interpretation=str(first.get("PhotometricInterpretation", "")),
    )
    log.debug(
        "loaded DICOM series: %d slices %dx%d from %d instances (%s)",
        len(frames), pixels.shape[1], pixels.shape[2], len(datasets), meta["SOPClassUID"],
    )
    return Volume(
        pixels=pixels,
        pixel_spacing=spacing,
        row_direction=row_dir,
        column_direction=col_dir,
        positions=positions,
        slice_spacing=slice_spacing,
        slice_thickness=frames[0].thickness,
        source_refs=[
            (f.sop_uid, None if f.frame_index is None else f.frame_index + 1) for f in frames
        ],
        meta=meta,
    )


# --------------------------------------------------------------------------- reading


def _read_datasets(paths: Sequence[Path | str] | Path | str) -> tuple[list[Dataset], list[str]]:
    if isinstance(paths, (str, Path)):
        root = Path(paths)
        if root.is_dir():
            files = sorted(p for p in root.rglob("*") if p.is_file() and not p.name.startswith("."))
            lenient = True
        elif root.is_file():
            files, lenient = [root], False
        else:
            raise GeometryError(f"{root} does not exist")
    else:
        files, lenient = [Path(p) for p in paths], False
    datasets: list[Dataset] = []
    names: list[str] = []
    skipped = 0
    for f in files:
        if f.name.upper() == "DICOMDIR":
            continue
        try:
            ds = pydicom.dcmread(f)
        except (InvalidDicomError, EOFError, OSError) as exc:
            if lenient:
                skipped += 1
                continue
            raise GeometryError(f"{f.name} is not a readable DICOM file ({exc})") from exc
        datasets.append(ds)
        names.append(f.name)
    if skipped:
        log.debug("skipped %d non-DICOM files", skipped)
    if not datasets:
        raise GeometryError(f"no DICOM files found in {paths}")
    return datasets, names


def _image_datasets(datasets: list[Dataset], names: list[str]) -> tuple[list[Dataset], list[str]]:
    """Keep objects with pixel data; SR, KO, PR and the like are not slices."""
    keep = [(ds, n) for ds, n in zip(datasets, names) if "PixelData" in ds]
    if not keep:
        raise GeometryError("none of the DICOM files holds an image (no PixelData)")
    if len(keep) < len(datasets):
        log.debug("ignored %d DICOM objects without pixel data", len(datasets) - len(keep))
    return [k[0] for k in keep], [k[1] for k in keep]


def _check_single_series(datasets: list[Dataset]) -> None:
    series = Counter(str(ds.get("SeriesInstanceUID", "")) for ds in datasets)
    if len(series) > 1:
        described = []
        for uid, count in series.most_common():
            ds = next(d for d in datasets if str(d.get("SeriesInstanceUID", "")) == uid)
            label = f"#{ds.get('SeriesNumber', '?')} '{ds.get('SeriesDescription', '')}'"
            described.append(f"{label}: {count} file(s)")
        raise GeometryError(
            f"the files belong to {len(series)} different series ({'; '.join(described)}); "
            "load one series at a time"
        )
    frames_of_reference = {str(ds.get("FrameOfReferenceUID", "")) for ds in datasets}
    if len(frames_of_reference) > 1:
        raise GeometryError(
            "the series mixes several frames of reference (FrameOfReferenceUID), "
            "so its slice positions cannot be compared"
        )
    for ds in datasets:
        if int(ds.get("SamplesPerPixel", 1)) != 1:
            raise GeometryError(
                f"the series holds colour images (SamplesPerPixel={ds.SamplesPerPixel}); "
                "a grayscale MR series is expected"
            )


# --------------------------------------------------------------------------- per-frame facts


def _floats(value: object, n: int, what: str, name: str) -> np.ndarray:
    try:
        arr = np.array([float(v) for v in value], dtype=np.float64)  # type: ignore[union-attr]
    except (TypeError, ValueError) as exc:
        raise GeometryError(f"{name}: {what} is missing or not numeric") from exc
    if arr.shape != (n,):
        raise GeometryError(f"{name}: {what} has {arr.size} values, {n} expected")
    return arr


def _frames_of(ds: Dataset, ds_index: int, name: str) -> list[_Frame]:
    sop = str(ds.get("SOPInstanceUID", ""))
    instance_number = int(ds.get("InstanceNumber") or 0)
    if "PerFrameFunctionalGroupsSequence" in ds or "SharedFunctionalGroupsSequence" in ds:
        return _multiframe_frames(ds, ds_index, name, sop, instance_number)
    if "ImagePositionPatient" not in ds or "ImageOrientationPatient" not in ds:
        raise GeometryError(
            f"{name} has no ImagePositionPatient/ImageOrientationPatient, so its place in "
            "the patient is unknown"
        )
    if "PixelSpacing" not in ds:
        raise GeometryError(f"{name} has no PixelSpacing")
    iop = _floats(ds.ImageOrientationPatient, 6, "ImageOrientationPatient", name)
    ps = _floats(ds.PixelSpacing, 2, "PixelSpacing", name)
    thickness = ds.get("SliceThickness")
    return [
        _Frame(
            ds_index=ds_index,
            frame_index=None,
            sop_uid=sop,
            instance_number=instance_number,
            position=_floats(ds.ImagePositionPatient, 3, "ImagePositionPatient", name),
            row_dir=iop[:3],
            col_dir=iop[3:],
            pixel_spacing=(float(ps[0]), float(ps[1])),
            thickness=float(thickness) if thickness not in (None, "") else None,
            slope=float(ds.get("RescaleSlope") or 1.0),
            intercept=float(ds.get("RescaleIntercept") or 0.0),
        )
    ]


def _group_item(per_frame: Dataset | None, shared: Dataset | None, keyword: str) -> Dataset | None:
    """The first item of a functional group macro, per-frame first, shared as fallback."""
    for container in (per_frame, shared):
        if container is not None:
            seq = container.get(keyword)
            if seq is not None and len(seq) > 0:
                return seq[0]
    return None


def _multiframe_frames(
    ds: Dataset, ds_index: int, name: str, sop: str, instance_number: int
) -> list[_Frame]:
    n_frames = int(ds.get("NumberOfFrames") or 1)
    per_frame_seq = ds.get("PerFrameFunctionalGroupsSequence")
    shared_seq = ds.get("SharedFunctionalGroupsSequence")
    shared = shared_seq[0] if shared_seq else None
    if per_frame_seq is not None and len(per_frame_seq) != n_frames:
        raise GeometryError(
            f"{name}: {len(per_frame_seq)} per-frame functional group items for {n_frames} frames"
        )
    frames = []
    for i in range(n_frames):
        per_frame = per_frame_seq[i] if per_frame_seq is not None else None
        where = f"{name} frame {i + 1}"
        pos = _group_item(per_frame, shared, "PlanePositionSequence")
        ori = _group_item(per_frame, shared, "PlaneOrientationSequence")
        meas = _group_item(per_frame, shared, "PixelMeasuresSequence")
        if pos is None or ori is None or "ImagePositionPatient" not in pos:
            raise GeometryError(f"{where} has no plane position/orientation functional group")
        if meas is None or "PixelSpacing" not in meas:
            raise GeometryError(f"{where} has no PixelSpacing in its pixel measures group")
        iop = _floats(ori.ImageOrientationPatient, 6, "ImageOrientationPatient", where)
        ps = _floats(meas.PixelSpacing, 2, "PixelSpacing", where)
        transform = _group_item(per_frame, shared, "PixelValueTransformationSequence")
        thickness = meas.get("SliceThickness")
        frames.append(
            _Frame(
                ds_index=ds_index,
                frame_index=i,
                sop_uid=sop,
                instance_number=instance_number,
                position=_floats(pos.ImagePositionPatient, 3, "ImagePositionPatient", where),
                row_dir=iop[:3],
                col_dir=iop[3:],
                pixel_spacing=(float(ps[0]), float(ps[1])),
                thickness=float(thickness) if thickness not in (None, "") else None,
                slope=float(transform.get("RescaleSlope") or 1.0) if transform else 1.0,
                intercept=float(transform.get("RescaleIntercept") or 0.0) if transform else 0.0,
            )
        )
    return frames


def _drop_repeated_instances(frames: list[_Frame]) -> tuple[list[_Frame], int]:
    """The same instance received twice is one image, not two."""
    seen: set[tuple[str, int | None]] = set()
    kept = []
    for f in frames:
        key = (f.sop_uid, f.frame_index)
        if key in seen:
            continue
        seen.add(key)
        kept.append(f)
    return kept, len(frames) - len(kept)


# --------------------------------------------------------------------------- geometry checks


def _check_matrix(datasets: list[Dataset], frames: list[_Frame], names: list[str]) -> None:
    sizes = Counter((int(ds.Rows), int(ds.Columns)) for ds in datasets)
    if len(sizes) > 1:
        listed = ", ".join(f"{r}x{c} ({n} file(s))" for (r, c), n in sizes.most_common())
        raise GeometryError(f"the slices have different matrix sizes (rows x columns): {listed}")
    ref = np.array(frames[0].pixel_spacing)
    for f in frames[1:]:
        if np.max(np.abs(np.array(f.pixel_spacing) - ref)) > 1e-3:
            raise GeometryError(
                "the slices have different pixel spacing: "
                f"{_fmt(ref)} mm in {names[frames[0].ds_index]} but "
                f"{_fmt(np.array(f.pixel_spacing))} mm in {names[f.ds_index]}"
            )


def _reference_orientation(frame: _Frame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    row = frame.row_dir / np.linalg.norm(frame.row_dir)
    col = frame.col_dir / np.linalg.norm(frame.col_dir)
    if abs(float(row @ col)) > 1e-3:
        raise GeometryError(
            f"ImageOrientationPatient row and column directions are not orthogonal "
            f"(cosine {float(row @ col):.4f})"
        )
    # Remove the rounding residue so that the volume's axes are exactly orthonormal.
    col = col - (col @ row) * row
    col /= np.linalg.norm(col)
    normal = np.cross(row, col)
    return row, col, normal / np.linalg.norm(normal)


def _check_orientation(
    frames: list[_Frame], row: np.ndarray, col: np.ndarray, tol_deg: float, names: list[str]
) -> None:
    cos_tol = np.cos(np.deg2rad(tol_deg))
    for f in frames[1:]:
        r = f.row_dir / np.linalg.norm(f.row_dir)
        c = f.col_dir / np.linalg.norm(f.col_dir)
        cos_r, cos_c = float(r @ row), float(c @ col)
        if cos_r < cos_tol or cos_c < cos_tol:
            angle = np.rad2deg(np.arccos(np.clip(min(cos_r, cos_c), -1.0, 1.0)))
            where = names[f.ds_index] + ("" if f.frame_index is None else f" frame {f.frame_index + 1}")
            raise GeometryError(
                f"the slices are not parallel: {where} is tilted {angle:.1f} degrees from the "
                f"first slice (tolerance {tol_deg} degrees); the series mixes orientations "
                "(e.g. a localizer or another view)"
            )


def _sort_and_resolve_duplicates(
    frames: list[_Frame], normal: np.ndarray, duplicates: str
) -> tuple[list[_Frame], int]:
    along = np.array([float(f.position @ normal) for f in frames])
    order = sorted(
        range(len(frames)),
        key=lambda k: (along[k], frames[k].instance_number, frames[k].frame_index or 0, frames[k].sop_uid),
    )
    groups: list[list[int]] = []
    for k in order:
        if groups and abs(along[k] - along[groups[-1][0]]) < _DUPLICATE_TOL_MM:
            groups[-1].append(k)
        else:
            groups.append([k])
    crowded = [g for g in groups if len(g) > 1]
    if crowded and duplicates != "first":
        worst = max(crowded, key=len)
        raise GeometryError(
            f"{len(crowded)} slice position(s) hold more than one image (up to {len(worst)} "
            f"at {along[worst[0]]:.2f} mm along the normal): the series mixes several "
            "phases, inversion times or image types at the same location; send a series with "
            "one image per location, or load with duplicates='first'"
        )
    kept = [
        frames[min(g, key=lambda k: (frames[k].instance_number, frames[k].frame_index or 0, frames[k].sop_uid))]
        for g in groups
    ]
    return kept, len(frames) - len(kept)


def _check_collinear(positions: np.ndarray, normal: np.ndarray, tol_mm: float) -> None:
    d = positions - positions[0]
    inplane = d - np.outer(d @ normal, normal)
    shift = np.linalg.norm(inplane, axis=1)
    k = int(np.argmax(shift))
    if shift[k] > tol_mm:
        raise GeometryError(
            f"the slice positions do not lie on one line along the slice normal: slice {k + 1} "
            f"is shifted {shift[k]:.2f} mm in-plane from slice 1 (tolerance {tol_mm:.2f} mm)"
        )


def _check_spacing(
    positions: np.ndarray, normal: np.ndarray, rtol: float, atol_mm: float
) -> tuple[float | None, float]:
    if len(positions) < 2:
        return None, 0.0
    gaps = np.diff(positions @ normal)
    median = float(np.median(gaps))
    max_dev = float(np.max(np.abs(gaps - median)))
    tol = max(atol_mm, rtol * median)
    if max_dev > tol:
        raise GeometryError(
            f"the slice spacing is not uniform: gaps between neighbouring slices range from "
            f"{gaps.min():.2f} to {gaps.max():.2f} mm (median {median:.2f} mm, tolerance "
            f"{tol:.2f} mm); a slice may be missing or two stacks may be mixed"
        )
    return float(np.mean(gaps)), max_dev


# --------------------------------------------------------------------------- pixels


def _stack_pixels(datasets: list[Dataset], frames: list[_Frame]) -> np.ndarray:
    rows, cols = int(datasets[0].Rows), int(datasets[0].Columns)
    out = np.empty((len(frames), rows, cols), dtype=np.float32)
    decoded: dict[int, np.ndarray] = {}
    for k, f in enumerate(frames):
        arr = decoded.get(f.ds_index)
        if arr is None:
            try:
                arr = datasets[f.ds_index].pixel_array
            except Exception as exc:  # noqa: BLE001 - any decoder failure means the same to the caller
                raise GeometryError(f"cannot decode the pixel data of an image: {exc}") from exc
            if f.frame_index is not None and arr.ndim == 2:
                arr = arr[np.newaxis]
            decoded[f.ds_index] = arr
        plane = arr if f.frame_index is None else arr[f.frame_index]
        if f.slope != 1.0 or f.intercept != 0.0:
            out[k] = plane.astype(np.float32) * np.float32(f.slope) + np.float32(f.intercept)
        else:
            out[k] = plane
    return out


def _fmt(v: np.ndarray) -> str:
    return "/".join(f"{x:.4g}" for x in v)
