"""Deterministic Series Numbers for result objects.

Rule: ``source SeriesNumber * 100 + offset`` with offsets SEG 1, SR 2, PDF report 3, so the
results of source series 12 are series 1201, 1202 and 1203 and sort right after it in a viewer's
series list. A source without a SeriesNumber, or one so large that the result would leave the IS
range (PS3.5: -2^31 .. 2^31-1), uses ``9900 + offset`` (still deterministic).
"""

from __future__ import annotations

from pydicom.dataset import Dataset

__all__ = ["SERIES_OFFSETS", "derived_series_number"]

SERIES_OFFSETS: dict[str, int] = {"seg": 1, "sr": 2, "pdf": 3}
_IS_MAX = 2**31 - 1
_FALLBACK_BASE = 9900


def derived_series_number(source: Dataset | int | None, kind: str) -> int:
    offset = SERIES_OFFSETS[kind]
    number = source.get("SeriesNumber") if isinstance(source, Dataset) else source
    try:
        base = int(number) if number not in (None, "") else None  # type: ignore[arg-type]
    except (TypeError, ValueError):
        base = None
    if base is None or base < 0 or base * 100 + offset > _IS_MAX:
        return _FALLBACK_BASE + offset
    return base * 100 + offset
