"""Synthetic image/mask pairs mixed into segmenter training batches (`lgenode pipeline experiment`).

A synthetic set is a ``pairs.npz`` file (the contract in ``pipeline/synth/README.md``):
``images`` float32 (N, 128, 128), already through ``pp.normalize_intensity``, and ``masks``
uint8 (N, 128, 128) with labels 0-4, on the LV-centred ROI grid. Whatever produced it
(physics renderer, pix2pix, CycleGAN), training treats every source the same way:

* a fixed number of slices per batch, ``round(batch_size * fraction)``, comes from the pool,
  the rest from the real cases exactly as without synthetic data (so the real part of a batch
  keeps its composition, and runs with and without synthetic data see the same number of
  optimiser steps: "same training budget" means same steps and batch size);
* each synthetic slice gets its own random spatial transform (rotation, flip, scale,
  anisotropy, elastic; the ROI is centred already, so only the jitter moves the centre) and
  the same intensity augmentation as real slices, after re-normalising the warped patch.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from models import preprocess as pp
from pipeline.augment import AugmentConfig, augment_intensity, random_warp


class SyntheticDataError(ValueError):
    """A synthetic set that breaks the pairs.npz contract."""


@dataclass
class SyntheticPool:
    images: np.ndarray  # (N, 128, 128) float32
    masks: np.ndarray  # (N, 128, 128) uint8
    sources: list[str]  # one path per loaded file
    counts: list[int]  # pairs per file

    @classmethod
    def load(cls, paths: list[str | Path], size: int = pp.ROI_SIZE) -> SyntheticPool:
        """Read and check one or more ``pairs.npz`` files (a folder means its pairs.npz)."""
        if not paths:
            raise SyntheticDataError("no synthetic sets given")
        imgs, msks, srcs, counts = [], [], [], []
        for p in paths:
            path = resolve_pairs_path(p)
            if not path.is_file():
                raise SyntheticDataError(f"{path}: no such synthetic set (pairs.npz)")
            with np.load(path) as z:
                if "images" not in z or "masks" not in z:
                    raise SyntheticDataError(f"{path}: needs arrays 'images' and 'masks', "
                                             f"has {sorted(z.files)}")
                x, y = np.asarray(z["images"]), np.asarray(z["masks"])
            if x.ndim != 3 or x.shape != y.shape or x.shape[1:] != (size, size):
                raise SyntheticDataError(f"{path}: images {x.shape} and masks {y.shape} must "
                                         f"both be (N, {size}, {size})")
            if len(x) == 0:
                raise SyntheticDataError(f"{path}: empty")
            if not np.isfinite(x).all():
                raise SyntheticDataError(f"{path}: images contain NaN or inf")
            if y.min() < 0 or y.max() >= pp.N_CLASSES:
                raise SyntheticDataError(f"{path}: mask labels outside 0..{pp.N_CLASSES - 1}")
            imgs.append(x.astype(np.float32))
            msks.append(y.astype(np.uint8))
            srcs.append(str(path))
            counts.append(len(x))
        return cls(np.concatenate(imgs), np.concatenate(msks), srcs, counts)

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def draw(self, rng: np.random.Generator, k: int, cfg: AugmentConfig
             ) -> tuple[np.ndarray, np.ndarray]:
        """``k`` augmented slices: (x (k, 128, 128) float32, y (k, 128, 128) uint8)."""
        if k <= 0:
            size = self.images.shape[1:]
            return np.zeros((0, *size), np.float32), np.zeros((0, *size), np.uint8)
        idx = rng.integers(len(self), size=k)
        h, w = self.images.shape[1:]
        centre = np.repeat(np.array([[h // 2, w // 2]], float), k, 0)
        x, y = random_warp(self.images[idx], self.masks[idx], centre, (h, w), rng, cfg)
        # Per-slice re-normalisation: a zoom-out pads with zeros, which moves the percentiles.
        x = np.stack([pp.normalize_intensity(s) for s in x])
        return augment_intensity(x, rng, cfg), y

    def describe(self) -> dict[str, object]:
        labels = np.bincount(self.masks.ravel(), minlength=pp.N_CLASSES)[:pp.N_CLASSES]
        return {"files": self.sources, "pairs": self.counts, "total": len(self),
                "label_fraction": [float(v) for v in labels / max(labels.sum(), 1)]}


def resolve_pairs_path(p: str | Path) -> Path:
    """A file as given; a folder means its pairs.npz (`render`, generators) or masks.npz
    (`simulate --render`, which stores the images beside the masks)."""
    path = Path(p)
    if path.is_dir():
        return next((path / n for n in ("pairs.npz", "masks.npz") if (path / n).is_file()),
                    path / "pairs.npz")
    return path


def n_synthetic(batch_size: int, fraction: float) -> int:
    """Synthetic slices per batch; at least one real slice always stays in the batch."""
    if not 0.0 <= fraction < 1.0:
        raise ValueError("synthetic fraction must be in [0, 1)")
    return min(int(round(batch_size * fraction)), batch_size - 1)
