"""Image loaders: DICOM series, NIfTI, PNG stacks -> `models.volume.Volume`.

The loaders are imported lazily (PEP 562) so that importing `models.io` for `GeometryError`
does not pull pydicom, nibabel and Pillow into fast paths such as `lgenode --help`.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from models.io.errors import GeometryError

if TYPE_CHECKING:
    from models.io.dicom_series import load_dicom_series
    from models.io.nifti import load_nifti, save_nifti
    from models.io.png import load_png_stack

__all__ = ["GeometryError", "load_dicom_series", "load_nifti", "save_nifti", "load_png_stack"]

_LAZY = {
    "load_dicom_series": "models.io.dicom_series",
    "load_nifti": "models.io.nifti",
    "save_nifti": "models.io.nifti",
    "load_png_stack": "models.io.png",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'models.io' has no attribute {name!r}")
