"""A stack of PNG slices (e.g. EMIDEC) as a `Volume` with unknown geometry."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from models.io.errors import GeometryError
from models.volume import Volume

__all__ = ["load_png_stack"]


def load_png_stack(folder_or_files: Path | str | Sequence[Path | str]) -> Volume:
    """Read PNG slices sorted by file name into a `Volume`.

    PNG carries no geometry: pixel spacing is (1, 1), directions are the identity, slices are
    1 unit apart, and ``meta["spacing_known"]`` is False so that nobody reports millilitres
    or millimetres from it. Colour images are converted to grayscale (L).
    """
    if isinstance(folder_or_files, (str, Path)):
        root = Path(folder_or_files)
        files = sorted(root.glob("*.png")) if root.is_dir() else [root]
    else:
        files = sorted(Path(f) for f in folder_or_files)
    if not files:
        raise GeometryError(f"no PNG files found in {folder_or_files}")
    slices = []
    for f in files:
        with Image.open(f) as im:
            arr = np.asarray(im if im.mode in ("L", "I", "I;16", "F") else im.convert("L"))
        slices.append(arr)
    shapes = {s.shape for s in slices}
    if len(shapes) > 1:
        raise GeometryError(f"the PNG slices have different sizes: {sorted(shapes)}")
    pixels = np.stack(slices).astype(np.float32)
    n = pixels.shape[0]
    return Volume(
        pixels=pixels,
        pixel_spacing=(1.0, 1.0),
        row_direction=np.array([1.0, 0.0, 0.0]),
        column_direction=np.array([0.0, 1.0, 0.0]),
        positions=np.array([[0.0, 0.0, float(k)] for k in range(n)]),
        slice_spacing=1.0 if n > 1 else None,
        slice_thickness=None,
        meta={"spacing_known": False, "files": [f.name for f in files]},
    )
