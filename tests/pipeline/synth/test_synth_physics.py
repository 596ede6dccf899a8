"""Physics baseline renderer: tissue contrast, determinism, figure grid."""

from __future__ import annotations

import numpy as np

from pipeline.synth import physics as P
from pipeline.synth import shapes as S


def lesion_phantom(ring) -> np.ndarray:
    m = ring(16.0, 26.0)
    idx, ang, depth = S.wall_coordinates(m)
    inf = (ang > 30) & (ang < 150)
    m[idx[0][inf], idx[1][inf]] = 3
    core = (ang > 60) & (ang < 120) & (depth < 0.45)
    m[idx[0][core], idx[1][core]] = 4
    return m


def test_ti_nulls_the_tissue():
    assert np.isclose(P.ir_signal(500.0, 500.0 * np.log(2.0)), 0.0, atol=1e-12)
    assert P.ir_signal(300.0, 500.0 * np.log(2.0)) > 0.3


def test_contrast_bright_blood_and_scar_dark_myocardium_and_mvo(ring):
    m = lesion_phantom(ring)
    core = {k: m == k for k in range(1, 5)}
    for i in range(8):
        img, p = P.render(m, np.random.default_rng(i))
        assert img.shape == m.shape and img.dtype == np.float32
        mean = {k: float(img[v].mean()) for k, v in core.items()}
        assert mean[1] > 2 * mean[2], p
        assert mean[3] > 2 * mean[2], p
        assert mean[4] < 0.6 * mean[3], p
        assert p["t1_infarct_ms"] < p["t1_myocardium_ms"] <= p["t1_mvo_ms"]


def test_render_is_deterministic_and_varies_with_seed(ring):
    m = lesion_phantom(ring)
    a = P.render_many(np.stack([m, m]), seed=1)
    b = P.render_many(np.stack([m, m]), seed=1)
    c = P.render_many(np.stack([m, m]), seed=2)
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert not np.array_equal(a[0], a[1]), "parameters are drawn per image"


def test_figure_grid_writes_png(tmp_path, ring):
    m = np.stack([lesion_phantom(ring)] * 2)
    imgs = P.render_many(m, 0)
    out = P.figure_grid(imgs, m, imgs, m, str(tmp_path / "grid.png"), n=2)
    assert (tmp_path / "grid.png").stat().st_size > 1000 and out.endswith("grid.png")
