"""A stack of parallel slices with its patient-space geometry.

Conventions (DICOM patient coordinates, LPS, millimetres):
- ``pixels`` has shape (n_slices, rows, columns); ``pixels[k, i, j]`` is row ``i``, column ``j``
  of slice ``k``.
- ``row_direction`` is the unit vector along a row (increasing column index j), i.e. the first
  three values of ImageOrientationPatient; ``column_direction`` is along a column (increasing
  row index i), the last three.
- ``pixel_spacing`` is (row spacing = distance between rows, column spacing = distance between
  columns) exactly as DICOM PixelSpacing.
- ``positions[k]`` is ImagePositionPatient of slice k (centre of its first pixel); slices are
  sorted so that their position along ``normal`` increases.
- ``slice_spacing`` is the distance between adjacent slice positions along the normal
  (not SliceThickness), ``None`` for a single slice.
So voxel (k, i, j) sits at ``positions[k] + j*col_spacing*row_direction + i*row_spacing*column_direction``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class Volume:
    pixels: np.ndarray
    pixel_spacing: tuple[float, float]
    row_direction: np.ndarray
    column_direction: np.ndarray
    positions: np.ndarray
    slice_spacing: float | None = None
    slice_thickness: float | None = None
    # Source references, one per slice: (SOPInstanceUID, frame number or None); empty when
    # the volume did not come from DICOM.
    source_refs: list[tuple[str, int | None]] = field(default_factory=list)
    meta: dict[str, object] = field(default_factory=dict)

    @property
    def normal(self) -> np.ndarray:
        n = np.cross(self.row_direction, self.column_direction)
        return n / np.linalg.norm(n)

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(int(s) for s in self.pixels.shape)  # type: ignore[return-value]

    def affine_lps(self) -> np.ndarray:
        """4x4 matrix mapping (j, i, k, 1) voxel indices to LPS mm."""
        row_sp, col_sp = self.pixel_spacing
        a = np.eye(4)
        a[:3, 0] = self.row_direction * col_sp
        a[:3, 1] = self.column_direction * row_sp
        dz = self.slice_spacing if self.slice_spacing else (self.slice_thickness or 1.0)
        a[:3, 2] = self.normal * dz
        a[:3, 3] = self.positions[0]
        return a

    def voxel_volume_ml(self) -> float:
        """Volume of one voxel in mL, using slice spacing (gap included), not thickness."""
        row_sp, col_sp = self.pixel_spacing
        dz = self.slice_spacing if self.slice_spacing else (self.slice_thickness or 0.0)
        return row_sp * col_sp * dz / 1000.0
