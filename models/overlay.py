"""Overlay pictures of label maps on images (PIL only, no matplotlib: fast and headless)."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from models import LABELS

# RGB per label; 0 (background) is never drawn.
COLOURS: dict[int, tuple[int, int, int]] = {
    1: (255, 215, 0),  # cavity: gold
    2: (30, 144, 255),  # normal myocardium: blue
    3: (220, 20, 60),  # infarct: crimson
    4: (50, 205, 50),  # MVO: green
}


def window(image: np.ndarray, lo_pct: float = 1.0, hi_pct: float = 99.0, ref: np.ndarray | None = None) -> np.ndarray:
    """Grey values -> uint8 with a percentile window (of ``ref``, e.g. the whole stack, if given)."""
    src = np.asarray(ref if ref is not None else image, dtype=np.float32)
    lo, hi = np.percentile(src, [lo_pct, hi_pct]) if src.size else (0.0, 1.0)
    scaled = (np.asarray(image, dtype=np.float32) - lo) / max(float(hi - lo), 1e-6)
    return (np.clip(scaled, 0.0, 1.0) * 255).astype(np.uint8)


def render_overlay(image: np.ndarray, labels: np.ndarray, alpha: float = 0.45, legend: bool = True,
                   ref: np.ndarray | None = None, scale: int = 1) -> Image.Image:
    """RGB picture of one slice with labels blended in, optionally with a colour legend strip below."""
    grey = window(image, ref=ref)
    rgb = np.repeat(grey[..., None], 3, axis=-1).astype(np.float32)
    for lab, colour in COLOURS.items():
        m = labels == lab
        rgb[m] = (1 - alpha) * rgb[m] + alpha * np.array(colour, dtype=np.float32)
    img = Image.fromarray(rgb.astype(np.uint8), "RGB")
    if scale > 1:
        img = img.resize((img.width * scale, img.height * scale), Image.NEAREST)
    if not legend:
        return img
    strip = legend_strip(img.width)
    out = Image.new("RGB", (max(img.width, strip.width), img.height + strip.height), (0, 0, 0))
    out.paste(img, (0, 0))
    out.paste(strip, (0, img.height))
    return out


def legend_strip(width: int) -> Image.Image:
    """The colour legend (one row per label), at least ``width`` pixels wide, black background."""
    row_h = 14
    strip = Image.new("RGB", (max(width, 150), row_h * len(COLOURS) + 4), (0, 0, 0))
    draw = ImageDraw.Draw(strip)
    for i, (lab, colour) in enumerate(COLOURS.items()):
        y = 2 + i * row_h
        draw.rectangle([4, y + 2, 14, y + 11], fill=colour)
        draw.text((20, y), LABELS[lab], fill=(255, 255, 255))
    return strip
