"""Fixtures for the simulator tests: a toy bank of ROI masks (no shared data needed)."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.synth import shapes as S


def ring_mask(endo: float, epi: float, centre: tuple[float, float] = (64.0, 64.0),
              aspect: float = 1.0, size: int = 128) -> np.ndarray:
    """Elliptical LV: cavity (1) inside ``endo``, myocardium (2) up to ``epi`` (px, row radius x aspect)."""
    rr, cc = np.mgrid[0:size, 0:size].astype(float)
    d = np.hypot((rr - centre[0]) / aspect, cc - centre[1])
    m = np.zeros((size, size), np.uint8)
    m[d <= epi] = 2
    m[d <= endo] = 1
    return m


def toy_bank(n_cases: int = 8, n_slices: int = 5, seed: int = 0) -> S.RealBank:
    """Cases of shrinking elliptical rings; odd cases carry an infarct sector (with MVO every 3rd slice)."""
    rng = np.random.default_rng(seed)
    masks, ids, pos, offs = [], [], [], []
    for c in range(n_cases):
        aspect = rng.uniform(0.8, 1.25)
        start = rng.uniform(0, 360)
        for k in range(n_slices):
            endo = 20.0 - 2.5 * k + rng.uniform(-1, 1)
            m = ring_mask(endo, endo + rng.uniform(6, 9), aspect=aspect)
            if c % 2:
                idx, ang, depth = S.wall_coordinates(m)
                lesion = (np.mod(ang - start, 360) < 90) & (depth < 0.7)
                m[idx[0][lesion], idx[1][lesion]] = 3
                if k % 3 == 0:
                    core = lesion & (np.mod(ang - start, 360) < 40) & (depth < 0.3)
                    m[idx[0][core], idx[1][core]] = 4
            masks.append(m)
            ids.append(f"Case_{'P' if c % 2 else 'N'}{c:03d}")
            pos.append(k / (n_slices - 1))
            offs.append((0.0, 0.0))
    return S.RealBank(np.stack(masks), ids, np.asarray(pos), np.asarray(offs))


@pytest.fixture(scope="session")
def bank() -> S.RealBank:
    return toy_bank()


@pytest.fixture(scope="session")
def ring():
    """The ``ring_mask`` helper."""
    return ring_mask


@pytest.fixture(scope="session")
def make_bank():
    """The ``toy_bank`` helper."""
    return toy_bank
