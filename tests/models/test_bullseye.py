"""Bullseye PNG: AHA layout (1 at the top, septum on the left) and colours from the values."""

from __future__ import annotations

import io

import matplotlib
import numpy as np
import pytest
from PIL import Image

from models.bullseye import bullseye_png, render_bullseye, segment_wedges


def test_layout_follows_the_aha_convention() -> None:
    w = segment_wedges()
    assert sorted(w) == list(range(1, 18))

    def centre(seg: int) -> float:
        r0, r1, a0, a1 = w[seg]
        return ((a0 + a1) / 2.0) % 360.0

    assert centre(1) == pytest.approx(90.0)      # basal anterior at the top
    assert centre(2) == pytest.approx(150.0)     # anteroseptal upper left
    assert centre(4) == pytest.approx(270.0)     # inferior at the bottom
    assert centre(6) == pytest.approx(30.0)      # anterolateral upper right
    assert centre(14) == pytest.approx(180.0)    # apical septal on the left
    assert centre(16) == pytest.approx(0.0)      # apical lateral on the right
    assert w[1][:2] == (0.75, 1.0) and w[7][:2] == (0.5, 0.75) and w[13][:2] == (0.25, 0.5)
    assert w[17][:2] == (0.0, 0.25)


def test_png_colours_match_the_values(tmp_path) -> None:
    values = {s: None for s in range(1, 18)}
    values.update({1: 100.0, 4: 0.0, 14: 100.0})
    data = bullseye_png(values, tmp_path / "b.png")
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and (tmp_path / "b.png").read_bytes() == data

    fig = render_bullseye(values)
    ax = fig.axes[0]
    fig.canvas.draw()
    img = np.asarray(Image.open(io.BytesIO(data)).convert("RGB")).astype(int)
    height = img.shape[0]
    cmap = matplotlib.colormaps["magma_r"]

    def pixel_at(r: float, deg: float) -> np.ndarray:
        x, y = r * np.cos(np.radians(deg)), r * np.sin(np.radians(deg))
        px, py = ax.transData.transform((x, y))
        return img[int(round(height - py)), int(round(px))]

    def rgb(v: float) -> np.ndarray:
        return np.array(cmap(v / 100.0)[:3]) * 255

    # Sample off-centre (away from the printed labels).
    assert np.abs(pixel_at(0.95, 80.0) - rgb(100.0)).max() < 12     # segment 1: 100 %
    assert np.abs(pixel_at(0.95, 260.0) - rgb(0.0)).max() < 12      # segment 4: 0 %
    assert np.abs(pixel_at(0.45, 170.0) - rgb(100.0)).max() < 12    # segment 14: 100 %
    grey = pixel_at(0.95, 20.0)                                      # segment 6: not covered
    assert np.abs(grey - grey.mean()).max() < 12 and grey.mean() > 150
