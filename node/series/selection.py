"""LGE selection rules: decide, for a complete series, whether it is an LGE short-axis stack.

Each rule that fails gives a reason that is stored with the series and shown by
`lgenode series`, so an administrator can see why a series was not processed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Iterable

import numpy as np

from node.config import SelectionConfig
from node.receive.contexts import IMAGE_SOP_CLASSES

ENHANCED_MR = "1.2.840.10008.5.1.4.1.1.4.1"


@dataclass(frozen=True)
class Verdict:
    selected: bool
    reason: str


def _text(attrs: dict[str, Any], key: str) -> str:
    v = attrs.get(key)
    if v is None:
        return ""
    return " ".join(str(x) for x in v) if isinstance(v, list) else str(v)


def _floats(v: Any, n: int) -> np.ndarray | None:
    try:
        arr = np.array([float(x) for x in v], dtype=float)
    except (TypeError, ValueError):
        return None
    return arr if arr.size == n else None


def evaluate(rules: SelectionConfig, instances: Iterable[tuple[str, dict[str, Any]]]) -> Verdict:
    """``instances`` are (SOP Class UID, header attrs) of every instance of the series."""
    items = list(instances)
    if not items:
        return Verdict(False, "no instances")
    classes = {c for c, _ in items}
    if not classes <= IMAGE_SOP_CLASSES:
        return Verdict(False, "not an MR image series")
    first = items[0][1]
    modality = _text(first, "Modality")
    if rules.modalities and modality not in rules.modalities:
        return Verdict(False, f"modality {modality or '(none)'} not in {rules.modalities}")

    names = " | ".join(_text(first, k) for k in ("SeriesDescription", "ProtocolName", "SequenceName"))
    for pat in rules.exclude_patterns:
        if re.search(pat, names, re.IGNORECASE):
            return Verdict(False, f"description matches exclude pattern {pat!r}")
    if rules.description_patterns and not any(re.search(p, names, re.IGNORECASE) for p in rules.description_patterns):
        return Verdict(False, "description/protocol/sequence name matches no LGE pattern")

    image_types = {t.upper() for _, a in items for t in (a.get("ImageType") or [])}
    excluded = image_types & {t.upper() for t in rules.exclude_image_types}
    if excluded:
        return Verdict(False, f"ImageType contains {sorted(excluded)}")

    n_slices = sum(int(a.get("NumberOfFrames") or 1) if c == ENHANCED_MR else 1 for c, a in items)
    if n_slices < rules.min_slices:
        return Verdict(False, f"{n_slices} slice(s), fewer than min_slices={rules.min_slices}")
    if n_slices > rules.max_slices:
        return Verdict(False, f"{n_slices} slices, more than max_slices={rules.max_slices} (multi-phase or 3D?)")

    if rules.require_consistent_geometry and ENHANCED_MR not in classes:
        problem = _geometry_problem([a for _, a in items])
        if problem:
            return Verdict(False, f"inconsistent geometry: {problem}")
    return Verdict(True, f"LGE series, {n_slices} slices")


def _geometry_problem(attrs: list[dict[str, Any]]) -> str | None:
    ious = [_floats(a.get("ImageOrientationPatient"), 6) for a in attrs]
    ipps = [_floats(a.get("ImagePositionPatient"), 3) for a in attrs]
    if any(v is None for v in ious) or any(v is None for v in ipps):
        return "missing ImageOrientationPatient/ImagePositionPatient"
    sizes = {(a.get("Rows"), a.get("Columns")) for a in attrs}
    if len(sizes) > 1:
        return f"several image sizes {sorted(map(str, sizes))}"
    spacings = set()
    for a in attrs:
        ps = _floats(a.get("PixelSpacing"), 2)
        spacings.add(None if ps is None else tuple(np.round(ps, 4)))
    if len(spacings) > 1:
        return "pixel spacing differs between slices"
    ref = ious[0]
    assert ref is not None
    normal = np.cross(ref[:3], ref[3:])
    for iou in ious[1:]:
        assert iou is not None
        if not np.allclose(iou, ref, atol=1e-3):
            return "slices are not parallel (ImageOrientationPatient differs)"
    d = np.sort(np.array([float(np.dot(normal, p)) for p in ipps if p is not None]))
    gaps = np.diff(d)
    if np.any(gaps < 1e-3):
        return "several slices at the same position (multiple phases or inversion times?)"
    if gaps.size and (gaps.max() - gaps.min()) > max(0.1 * float(np.median(gaps)), 0.05):
        return f"uneven slice spacing ({gaps.min():.2f}-{gaps.max():.2f} mm)"
    return None
