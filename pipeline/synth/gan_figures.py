"""Figures of a GAN run: loss curves per epoch and image grids (matplotlib, Agg)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

# Label colours of masks 0-4: background, cavity, myocardium, infarct, no-reflow.
MASK_COLOURS = np.array([[0, 0, 0], [230, 25, 75], [60, 180, 75], [255, 225, 25], [0, 130, 200]], np.uint8)


@dataclass(frozen=True)
class Panel:
    """One plot of :func:`plot_history`.

    Parameters
    ----------
    title: str
        Plot title.
    keys: tuple[str, ...]
        History keys drawn against the left axis (those missing from an entry are skipped).
    right: tuple[str, ...]
        History keys drawn against a second axis on the right (e.g. SSIM beside PSNR).
    """

    title: str
    keys: tuple[str, ...]
    right: tuple[str, ...] = ()


@dataclass(frozen=True)
class Column:
    """One column of :func:`image_grid`.

    Parameters
    ----------
    header: str
        Column title.
    images: numpy.ndarray
        (N, H, W) greyscale images, or label masks 0-4 when ``labels``.
    labels: bool
        Draw ``images`` as coloured label masks.
    contours: numpy.ndarray | None
        (N, H, W) label masks outlined on the images.
    """

    header: str
    images: np.ndarray
    labels: bool = False
    contours: np.ndarray | None = None


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_history(history: Sequence[dict[str, Any]], path: Path, panels: Sequence[Panel]) -> Path:
    """Plot history values per epoch, one panel each; returns ``path``."""
    plt = _pyplot()
    x = [e["epoch"] for e in history]

    def series(key: str) -> list[float] | None:
        return [float(e[key]) for e in history] if history and all(key in e for e in history) else None

    fig, axes = plt.subplots(1, len(panels), figsize=(4.5 * len(panels), 4), squeeze=False)
    for ax, panel in zip(axes[0], panels):
        for key in panel.keys:
            if (y := series(key)) is not None:
                ax.plot(x, y, marker=".", label=key)
        if any(series(k) is not None for k in panel.right):
            twin = ax.twinx()
            for i, key in enumerate(panel.right):
                if (y := series(key)) is not None:
                    twin.plot(x, y, marker=".", color=f"C{len(panel.keys) + i}", label=key)
            twin.legend(loc="lower right", fontsize=8)
        ax.set_title(panel.title, fontsize=10)
        ax.set_xlabel("epoch")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return Path(path)


def image_grid(columns: Sequence[Column], path: Path, row_titles: Sequence[str] | None = None, title: str = "",
               vmax: float = 1.0) -> Path:
    """One row per slice, one column per image stack; greyscale shown on [0, ``vmax``]; returns ``path``."""
    plt = _pyplot()
    n, m = len(columns[0].images), len(columns)
    fig, axes = plt.subplots(n, m, figsize=(2.2 * m, 2.2 * n), squeeze=False)
    for i in range(n):
        for j, col in enumerate(columns):
            ax = axes[i, j]
            if col.labels:
                ax.imshow(MASK_COLOURS[np.asarray(col.images[i], np.int64)])
            else:
                ax.imshow(col.images[i], cmap="gray", vmin=0.0, vmax=vmax)
            if col.contours is not None and col.contours[i].any():
                ax.contour(col.contours[i], levels=[0.5, 1.5, 2.5], colors=["r", "y", "c"], linewidths=0.6)
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(col.header, fontsize=9)
            if j == 0 and row_titles is not None:
                ax.set_ylabel(row_titles[i], fontsize=7)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return Path(path)
