"""Bullseye (AHA 17-segment polar map) of per-segment values, rendered with matplotlib (Agg).

Layout (AHA standard, as seen from the apex): rings from outside in are basal (1-6), mid (7-12),
apical (13-16) and the apex (17) in the centre. Segment 1 / 7 / 13 (anterior) is at the top;
numbers increase counter-clockwise, so the septum (2-3, 8-9, 14) is on the left and the lateral
wall (5-6, 11-12, 16) on the right. Segments that the slices did not cover are drawn grey and
hatched, labelled "n/a".
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from pathlib import Path

import numpy as np

__all__ = ["segment_wedges", "draw_bullseye", "render_bullseye", "bullseye_png"]

# Ring radii (inner, outer) per level.
_RINGS = {"basal": (0.75, 1.0), "mid": (0.5, 0.75), "apical": (0.25, 0.5), "apex": (0.0, 0.25)}


def segment_wedges() -> dict[int, tuple[float, float, float, float]]:
    """Segment -> (inner radius, outer radius, start angle, end angle) in degrees (matplotlib:
    counter-clockwise from +x). Each segment is centred on its AHA position (1 at the top)."""
    out: dict[int, tuple[float, float, float, float]] = {}
    for first, level, n in ((1, "basal", 6), (7, "mid", 6), (13, "apical", 4)):
        r0, r1 = _RINGS[level]
        width = 360.0 / n
        for i in range(n):
            centre = 90.0 + i * width  # counter-clockwise from the top
            out[first + i] = (r0, r1, centre - width / 2.0, centre + width / 2.0)
    out[17] = (0.0, 0.25, 0.0, 360.0)
    return out


def draw_bullseye(
    ax,
    cax,
    values: Mapping[int, float | None],
    *,
    label: str = "Mean transmurality",
    unit: str = "%",
    vmin: float = 0.0,
    vmax: float = 100.0,
    cmap: str = "magma_r",
    fontsize: float = 7.5,
) -> None:
    """Draw the bullseye into matplotlib axes ``ax`` with its colour bar in ``cax``."""
    import matplotlib
    from matplotlib.patches import Wedge

    colormap = matplotlib.colormaps[cmap]
    norm = matplotlib.colors.Normalize(vmin=vmin, vmax=vmax)
    for seg, (r0, r1, a0, a1) in segment_wedges().items():
        v = values.get(seg)
        covered = v is not None and bool(np.isfinite(v))
        face = colormap(norm(v)) if covered else (0.85, 0.85, 0.85, 1.0)
        ax.add_patch(Wedge((0.0, 0.0), r1, a0, a1, width=r1 - r0, facecolor=face,
                           edgecolor="black", linewidth=1.0, hatch=None if covered else "//"))
        rm = (r0 + r1) / 2.0 if seg != 17 else 0.0
        am = np.radians((a0 + a1) / 2.0)
        x, y = rm * np.cos(am), rm * np.sin(am)
        text = f"{seg}\n{v:.0f}{unit}" if covered else f"{seg}\nn/a"
        dark = covered and norm(v) > 0.55
        ax.text(x, y, text, ha="center", va="center", fontsize=fontsize,
                color="white" if dark else "black",
                bbox=None if covered else {"facecolor": "white", "edgecolor": "none", "pad": 0.5})
    ax.set_xlim(-1.1, 1.1)
    ax.set_ylim(-1.1, 1.1)
    ax.set_aspect("equal")
    ax.axis("off")
    small = fontsize - 0.5
    ax.text(0.0, 1.04, "anterior", ha="center", va="bottom", fontsize=small)
    ax.text(-1.04, 0.0, "septal", ha="right", va="center", fontsize=small, rotation=90)
    ax.text(1.04, 0.0, "lateral", ha="left", va="center", fontsize=small, rotation=270)
    ax.text(0.0, -1.04, "inferior", ha="center", va="top", fontsize=small)
    ax.figure.colorbar(matplotlib.cm.ScalarMappable(norm=norm, cmap=colormap), cax=cax,
                       label=f"{label} ({unit})")


def render_bullseye(
    values: Mapping[int, float | None],
    *,
    title: str = "Mean transmurality of enhancement",
    label: str = "Mean transmurality",
    unit: str = "%",
    vmin: float = 0.0,
    vmax: float = 100.0,
    cmap: str = "magma_r",
    footnote: str | None = None,
):
    """A matplotlib Figure (Agg canvas) of ``values`` (segment number -> value or None)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5.2, 4.6), dpi=120)
    ax = fig.add_axes((0.02, 0.08, 0.74, 0.82))
    cax = fig.add_axes((0.80, 0.15, 0.04, 0.68))
    draw_bullseye(ax, cax, values, label=label, unit=unit, vmin=vmin, vmax=vmax, cmap=cmap)
    fig.suptitle(title, fontsize=10)
    if footnote:
        fig.text(0.02, 0.02, footnote, fontsize=6.5, ha="left", va="bottom")
    return fig


def bullseye_png(values: Mapping[int, float | None], path: str | Path | None = None,
                 **kwargs: object) -> bytes:
    """PNG bytes of the bullseye; also written to ``path`` when given."""
    fig = render_bullseye(values, **kwargs)  # type: ignore[arg-type]
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    data = buf.getvalue()
    if path is not None:
        Path(path).write_bytes(data)
    return data
