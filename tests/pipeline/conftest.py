"""Fixtures for the pipeline tests: synthetic EMIDEC-like and MyoPS-like data sets in tmp dirs
(so training/evaluation paths run without the shared data), and the shared data when present."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.support.require import missing


def shared_root() -> Path:
    from pipeline.datasets.paths import data_root

    return data_root()


@pytest.fixture(scope="session")
def emidec_root() -> Path:
    root = shared_root()
    if not (root / "emidec" / "images").is_dir():
        missing("data", f"EMIDEC data not found under {root} (set LGENODE_DATA_DIR)")
    return root


@pytest.fixture(scope="session")
def myops_root() -> Path:
    root = shared_root()
    if not (root / "myops2020" / "Case3001_gd.nii.gz").exists():
        missing("data", f"MyoPS data not found under {root} (set LGENODE_DATA_DIR)")
    return root


def phantom_case(rng: np.random.Generator, n_slices: int, size: int, infarct: bool,
                 mvo: bool) -> tuple[np.ndarray, np.ndarray]:
    """(images uint8, labels uint8) (n, size, size): body, bright cavity (1), dark ring (2),
    bright infarct sector (3) with a dark core (4); LV near the centre like EMIDEC."""
    rr, cc = np.mgrid[0:size, 0:size].astype(np.float32)
    cy = size / 2 + rng.uniform(-4, 4)
    cx = size / 2 + rng.uniform(-4, 4)
    imgs = np.zeros((n_slices, size, size), np.float32)
    labs = np.zeros((n_slices, size, size), np.uint8)
    body = ((rr - size / 2) / (0.45 * size)) ** 2 + ((cc - size / 2) / (0.48 * size)) ** 2 <= 1
    ang = np.arctan2(rr - cy, cc - cx)
    for k in range(n_slices):
        s = 1.0 - 0.07 * k
        d = np.hypot(rr - cy, cc - cx)
        cav, wall = d <= 0.09 * size * s, (d > 0.09 * size * s) & (d <= 0.14 * size * s)
        img = np.where(body, 90.0, 5.0)
        img[cav] = 200.0
        img[wall] = 40.0
        labs[k][cav] = 1
        labs[k][wall] = 2
        if infarct:
            sector = wall & (np.abs(ang - 0.8) < 0.6)
            img[sector] = 210.0
            labs[k][sector] = 3
            if mvo:
                core = sector & (np.abs(ang - 0.8) < 0.2) & (d > 0.105 * size * s) & (d < 0.125 * size * s)
                img[core] = 50.0
                labs[k][core] = 4
        imgs[k] = img + rng.normal(0, 6, img.shape)
    return np.clip(imgs, 0, 255).astype(np.uint8), labs


def write_emidec(root: Path, n_normal: int = 3, n_path: int = 5, n_slices: int = 3,
                 size: int = 160, seed: int = 0) -> Path:
    """EMIDEC layout under ``root/emidec``: images/ and masks/ Case_XNNN_sliceKKK.png."""
    rng = np.random.default_rng(seed)
    base = root / "emidec"
    (base / "images").mkdir(parents=True, exist_ok=True)
    (base / "masks").mkdir(parents=True, exist_ok=True)
    ids = [f"Case_N{i:03d}" for i in range(n_normal)] + [f"Case_P{i:03d}" for i in range(n_path)]
    for cid in ids:
        path_case = cid.startswith("Case_P")
        imgs, labs = phantom_case(rng, n_slices, size, infarct=path_case,
                                  mvo=path_case and int(cid[-3:]) % 2 == 0)
        for k in range(n_slices):
            Image.fromarray(imgs[k]).save(base / "images" / f"{cid}_slice{k:03d}.png")
            Image.fromarray(labs[k]).save(base / "masks" / f"{cid}_slice{k:03d}.png")
    return root


def write_myops(root: Path, n_cases: int = 2, seed: int = 1) -> Path:
    """MyoPS layout under ``root/myops2020``: CaseNNNN_LGE/_gd.nii.gz with an oblique affine."""
    import nibabel as nib

    rng = np.random.default_rng(seed)
    base = root / "myops2020"
    base.mkdir(parents=True, exist_ok=True)
    to_myops = np.array([0, 500, 200, 2221, 2221], np.int16)  # EMIDEC class -> MyoPS value
    for i in range(n_cases):
        imgs, labs = phantom_case(rng, 3, 200, infarct=True, mvo=False)
        gd = to_myops[labs]
        gd[(labs == 0) & (imgs > 150)] = 600  # some "RV" that must map to background
        # NIfTI array (i, j, k) = (col, row, slice); 0.8 mm pixels, 10 mm slices, rotated.
        th = 0.3
        rot = np.array([[np.cos(th), -np.sin(th), 0], [np.sin(th), np.cos(th), 0], [0, 0, 1]])
        aff = np.eye(4)
        aff[:3, :3] = rot @ np.diag([0.8, 0.8, 10.0])
        aff[:3, 3] = [-80.0, -60.0, 20.0]
        for name, arr in (("LGE", imgs.astype(np.int16) * 8), ("gd", gd)):
            img = nib.Nifti1Image(np.transpose(arr, (2, 1, 0)).astype(np.int16), aff)
            nib.save(img, base / f"Case{3001 + i}_{name}.nii.gz")
    return root


@pytest.fixture(scope="session")
def synthetic_data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("data")
    write_emidec(root)
    write_myops(root)
    return root
