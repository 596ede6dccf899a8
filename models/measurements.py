"""Volumetric LGE measurements from a label volume and its geometry (pure numpy).

Labels follow the EMIDEC convention: 0 background, 1 LV cavity, 2 normal myocardium,
3 infarct, 4 microvascular obstruction (MVO, "no-reflow"). The structures measured nest:

- LV cavity      = label 1
- myocardium     = labels 2 + 3 + 4 (the whole LV myocardium, enhanced or not)
- infarct        = labels 3 + 4 (MVO is infarcted tissue)
- MVO            = label 4

Volumes use the voxel volume of the `Volume` (row spacing x column spacing x *slice spacing*), so
a short-axis stack with gaps between thin slices is measured as the slab each slice represents
(the usual disc-summation of cardiac MR), not just the imaged thickness. A single-slice volume
falls back to the slice thickness (see `Volume.voxel_volume_ml`).

Percentages are by volume, relative to the LV myocardium (2+3+4); when there is no myocardium they
are 0 rather than undefined, so a JSON consumer never sees NaN.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import ClassVar

import numpy as np

from models.volume import Volume

__all__ = [
    "BACKGROUND",
    "LV_CAVITY",
    "MYOCARDIUM",
    "INFARCT",
    "MVO",
    "MYOCARDIAL_DENSITY_G_PER_ML",
    "Measurements",
    "structure_masks",
    "compute_measurements",
]

BACKGROUND, LV_CAVITY, MYOCARDIUM, INFARCT, MVO = 0, 1, 2, 3, 4
# Specific gravity of myocardium used by CMR guidelines (SCMR post-processing recommendations).
MYOCARDIAL_DENSITY_G_PER_ML = 1.05

# Which label values make up each measured structure (the SEG segments use the same sets).
STRUCTURE_LABELS: dict[str, tuple[int, ...]] = {
    "lv_cavity": (LV_CAVITY,),
    "myocardium": (MYOCARDIUM, INFARCT, MVO),
    "infarct": (INFARCT, MVO),
    "mvo": (MVO,),
}


def structure_masks(labels: np.ndarray) -> dict[str, np.ndarray]:
    """Boolean masks of the four nested structures, keyed as in `STRUCTURE_LABELS`."""
    labels = np.asarray(labels)
    if labels.ndim != 3:
        raise ValueError(f"labels must be (n_slices, rows, cols), got shape {labels.shape}")
    unknown = np.setdiff1d(np.unique(labels), np.arange(5))
    if unknown.size:
        raise ValueError(f"unexpected label values {unknown.tolist()} (expected 0..4)")
    return {name: np.isin(labels, values) for name, values in STRUCTURE_LABELS.items()}


@dataclass(frozen=True)
class Measurements:
    """Volumetric results; every field's unit is in `UNITS` (UCUM codes, as in the SR)."""

    lv_cavity_ml: float
    myocardium_ml: float
    infarct_ml: float
    mvo_ml: float
    myocardial_mass_g: float
    infarct_percent_of_myocardium: float
    mvo_percent_of_myocardium: float
    voxel_volume_ml: float
    n_slices: int
    # How the volumes were obtained, so a report can say it (not a measurement).
    method: dict[str, object] = field(default_factory=dict)

    UNITS: ClassVar[dict[str, str]] = {
        "lv_cavity_ml": "ml",
        "myocardium_ml": "ml",
        "infarct_ml": "ml",
        "mvo_ml": "ml",
        "myocardial_mass_g": "g",
        "infarct_percent_of_myocardium": "%",
        "mvo_percent_of_myocardium": "%",
        "voxel_volume_ml": "ml",
        "n_slices": "1",
    }

    def to_dict(self) -> dict[str, object]:
        """Plain JSON-ready dict: ``{"values": {...}, "units": {...}, "method": {...}}``."""
        d = asdict(self)
        method = d.pop("method")
        return {"values": d, "units": dict(self.UNITS), "method": method}

    def to_json(self, **kwargs: object) -> str:
        return json.dumps(self.to_dict(), **kwargs)  # type: ignore[arg-type]

    @classmethod
    def from_dict(cls, d: dict[str, object]) -> Measurements:
        values = dict(d["values"])  # type: ignore[call-overload]
        return cls(**values, method=dict(d.get("method", {})))  # type: ignore[arg-type]


def compute_measurements(labels: np.ndarray, volume: Volume) -> Measurements:
    """Volumes, mass and percentages of ``labels`` (shape ``volume.shape``)."""
    labels = np.asarray(labels)
    if labels.shape != volume.shape:
        raise ValueError(f"labels shape {labels.shape} differs from the volume's {volume.shape}")
    voxel_ml = volume.voxel_volume_ml()
    if voxel_ml <= 0:
        raise ValueError("the volume has no usable slice spacing or thickness")
    masks = structure_masks(labels)
    ml = {name: float(np.count_nonzero(m)) * voxel_ml for name, m in masks.items()}
    myo = ml["myocardium"]

    def pct(x: float) -> float:
        return 100.0 * x / myo if myo > 0 else 0.0

    dz_source = "slice_spacing" if volume.slice_spacing else "slice_thickness"
    return Measurements(
        lv_cavity_ml=ml["lv_cavity"],
        myocardium_ml=myo,
        infarct_ml=ml["infarct"],
        mvo_ml=ml["mvo"],
        myocardial_mass_g=myo * MYOCARDIAL_DENSITY_G_PER_ML,
        infarct_percent_of_myocardium=pct(ml["infarct"]),
        mvo_percent_of_myocardium=pct(ml["mvo"]),
        voxel_volume_ml=voxel_ml,
        n_slices=int(labels.shape[0]),
        method={
            "through_plane": dz_source,
            "myocardial_density_g_per_ml": MYOCARDIAL_DENSITY_G_PER_ML,
            "structures": {k: list(v) for k, v in STRUCTURE_LABELS.items()},
        },
    )
