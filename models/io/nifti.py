"""NIfTI volumes <-> `Volume`.

Axis convention (the same one `Volume.affine_lps` uses): the NIfTI array ``data[i, j, k]``
becomes ``pixels[k, j, i]``; NIfTI axis 0 runs along a row (the DICOM row direction, increasing
column index), axis 1 along a column (the DICOM column direction) and axis 2 across slices.
The NIfTI affine is RAS; DICOM patient space is LPS, so x and y change sign.
`Volume` needs positions that increase along row x column. A left-handed affine (negative
determinant, what dcm2niix writes because it stores DICOM rows bottom-up) is therefore read with
NIfTI axis 1 reversed, which restores the original DICOM row order and display orientation
instead of reversing the slices.

`save_nifti` writes labels of a volume read by `load_nifti` back in that file's own voxel order,
with its header geometry (qform, sform, their codes, pixdim) unchanged, so that array tools can
compare the labels with the input voxel for voxel. Any other volume (DICOM, PNG, or a NIfTI
volume whose grid has since changed) is written in the volume's own right-handed order with a
qform and sform built from its geometry; the world grid is the same either way.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np

from models.io.errors import GeometryError
from models.volume import Volume

__all__ = ["load_nifti", "save_nifti", "RAS_TO_LPS", "NiftiSource"]

RAS_TO_LPS = np.diag([-1.0, -1.0, 1.0, 1.0])
# Key of `Volume.meta` under which `load_nifti` keeps what `save_nifti` needs to write back.
SOURCE_KEY = "nifti_source"


@dataclass(frozen=True)
class NiftiSource:
    """The file a `Volume` was read from: its header, array shape and how its axes were mapped.

    ``grid`` is the `Volume` geometry derived from it, so that `save_nifti` writes the file's own
    order only for a volume still on that grid.
    """

    header: nib.Nifti1Header
    shape: tuple[int, ...]  # the stored array's shape (2-D and 4-D singleton kept)
    rows_flipped: bool
    grid: tuple[tuple[int, ...], np.ndarray]  # (Volume.shape, Volume.affine_lps())

    def matches(self, volume: Volume) -> bool:
        shape, affine = self.grid
        return volume.shape == shape and bool(
            np.allclose(volume.affine_lps(), affine, rtol=0.0, atol=1e-6)
        )


def load_nifti(path: Path | str) -> Volume:
    """Read a 3-D NIfTI image (a 4-D one with a single volume is accepted) as a `Volume`.

    Pixels keep the file's stored values with scl_slope/scl_inter applied only when they are
    set (label volumes stay integer). The geometry comes from the sform if set, else the qform.
    """
    path = Path(path)
    img = nib.load(path)
    data = np.asanyarray(img.dataobj)
    stored_shape = tuple(int(x) for x in data.shape)
    if img.header.get_slope_inter() not in ((None, None), (1.0, 0.0)):
        data = img.get_fdata(dtype=np.float32)
    while data.ndim > 3 and data.shape[-1] == 1:
        data = data[..., 0]
    if data.ndim == 2:
        data = data[..., np.newaxis]
    if data.ndim != 3:
        raise GeometryError(f"{path.name}: a 3-D image is expected, got shape {data.shape}")

    affine = RAS_TO_LPS @ img.affine
    pixels = np.transpose(data, (2, 1, 0))  # (k, j, i)
    flip_rows = bool(np.linalg.det(affine[:3, :3]) < 0)  # same sign in RAS and LPS
    if flip_rows:
        # Reverse NIfTI axis 1 so that the stack becomes right-handed (see module docstring).
        affine = affine @ _flip_axis1(pixels.shape[1])
        pixels = pixels[:, ::-1, :]
    pixels = np.ascontiguousarray(pixels)
    col_vec, row_vec, slice_vec = affine[:3, 0], affine[:3, 1], affine[:3, 2]
    col_sp, row_sp = float(np.linalg.norm(col_vec)), float(np.linalg.norm(row_vec))
    row_direction = col_vec / col_sp  # along a row = increasing column index = NIfTI axis 0
    column_direction = row_vec / row_sp
    if abs(float(row_direction @ column_direction)) > 1e-3:
        raise GeometryError(f"{path.name}: the in-plane axes of the affine are not orthogonal")
    normal = np.cross(row_direction, column_direction)
    normal /= np.linalg.norm(normal)

    n = pixels.shape[0]
    positions = np.array([affine[:3, 3] + k * slice_vec for k in range(n)], dtype=np.float64)
    step = float(slice_vec @ normal)
    if n > 1 and np.linalg.norm(slice_vec - step * normal) > 1e-3 * max(abs(step), 1.0):
        raise GeometryError(
            f"{path.name}: the slice axis is sheared (not along the normal of the slices)"
        )
    spacing = abs(step) if n > 1 else None
    thickness = float(img.header.get_zooms()[2]) if len(img.header.get_zooms()) > 2 else None
    volume = Volume(
        pixels=pixels,
        pixel_spacing=(row_sp, col_sp),
        row_direction=row_direction,
        column_direction=column_direction,
        positions=positions,
        slice_spacing=spacing,
        slice_thickness=thickness,
        meta={"source": path.name, "spacing_known": True, "nifti_rows_flipped": flip_rows},
    )
    if isinstance(img, nib.Nifti1Image):  # NIfTI-1 and -2 files; a .hdr/.img pair is not kept
        volume.meta[SOURCE_KEY] = NiftiSource(
            header=img.header.copy(), shape=stored_shape, rows_flipped=flip_rows,
            grid=(volume.shape, volume.affine_lps()),
        )
    return volume


def _flip_axis1(n_rows: int) -> np.ndarray:
    """Voxel-index transform j -> n_rows - 1 - j."""
    m = np.eye(4)
    m[1, 1] = -1.0
    m[1, 3] = n_rows - 1
    return m


def save_nifti(labels: np.ndarray, like: Volume, path: Path | str) -> Path:
    """Write ``labels`` (shape ``like.shape``, slice/row/col order) with ``like``'s geometry.

    When ``like`` was read by `load_nifti` and is still on that grid, the file gets the input's
    voxel order, array shape and header geometry exactly (see the module docstring).
    """
    path = Path(path)
    labels = np.asarray(labels)
    if labels.shape != like.shape:
        raise ValueError(f"labels shape {labels.shape} differs from the volume's {like.shape}")
    path.parent.mkdir(parents=True, exist_ok=True)
    src = like.meta.get(SOURCE_KEY)
    if isinstance(src, NiftiSource) and src.matches(like):
        nib.save(_like_source(labels, src), path)
        return path
    affine = RAS_TO_LPS @ like.affine_lps()
    img = nib.Nifti1Image(np.ascontiguousarray(np.transpose(labels, (2, 1, 0))), affine)
    img.set_qform(affine, code=1)
    img.set_sform(affine, code=1)
    nib.save(img, path)
    return path


def _like_source(labels: np.ndarray, src: NiftiSource) -> nib.Nifti1Image:
    """``labels`` in the source file's voxel order, with a copy of its header."""
    labels = labels.astype(np.uint8) if labels.dtype == bool else labels
    data = labels[:, ::-1, :] if src.rows_flipped else labels  # undo load_nifti's flip
    data = np.ascontiguousarray(np.transpose(data, (2, 1, 0))).reshape(src.shape)
    hdr = src.header.copy()
    hdr.set_data_dtype(data.dtype)
    hdr.set_slope_inter(None, None)  # label values as stored, no intensity scaling
    hdr["cal_min"], hdr["cal_max"] = 0.0, 0.0
    # affine None: the header's qform and sform (and their codes) are written as they are.
    image_class = nib.Nifti2Image if isinstance(hdr, nib.Nifti2Header) else nib.Nifti1Image
    return image_class(data, None, header=hdr)
