"""MyoPS cine/LGE ROI slices for the CycleGAN: contract shape/range, LV centring, label mapping,
co-registration checks, hold-out split (synthetic NIfTI cases in tmp dirs; real data when present)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

import models.preprocess as pp
from pipeline.synth import cine_slices as cs
from tests.support.require import missing

SPACING = 0.9  # mm, in-plane; resampled to 1.25 mm by the loader
SHAPE = (3, 190, 200)  # (slices, rows, cols)
LV = (80.0, 115.0)  # LV centre (row, col) in input pixels: off the image centre on purpose


def phantom(lv: tuple[float, float] = LV, shape: tuple[int, int, int] = SHAPE, seed: int = 0
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(cine, lge, gd) int16 stacks on one grid; gd holds MyoPS values (500, 200, 1220, 2221, 600)."""
    rng = np.random.default_rng(seed)
    n, rows, cols = shape
    rr, cc = np.mgrid[0:rows, 0:cols].astype(float)
    body = ((rr - rows / 2) / (0.45 * rows)) ** 2 + ((cc - cols / 2) / (0.47 * cols)) ** 2 <= 1
    d = np.hypot(rr - lv[0], cc - lv[1]) * SPACING  # mm
    ang = np.arctan2(rr - lv[0], cc - lv[1])
    rv = np.hypot(rr - lv[0], cc - (lv[1] - 45 / SPACING)) * SPACING < 14
    cine, lge, gd = (np.zeros(shape, np.int16) for _ in range(3))
    for k in range(n):
        r_endo, r_epi = 22.0 - 3 * k, 31.0 - 3 * k
        cav, wall = d <= r_endo, (d > r_endo) & (d <= r_epi)
        scar = wall & (np.abs(ang - 1.0) < 0.5)
        edema = wall & (np.abs(ang + 1.5) < 0.3)
        c = np.where(body, 300.0, 10.0)
        c[rv] = 700
        c[cav] = 900
        c[wall] = 150
        g = np.where(body, 400.0, 10.0)
        g[rv] = 500
        g[cav] = 1300
        g[wall] = 80
        g[scar] = 1400
        lab = np.zeros((rows, cols), np.int16)
        lab[rv] = 600
        lab[cav] = 500
        lab[wall] = 200
        lab[edema] = 1220
        lab[scar] = 2221
        cine[k] = np.clip(c + rng.normal(0, 15, c.shape), 0, 4000)
        lge[k] = np.clip(g + rng.normal(0, 15, g.shape), 0, 4000)
        gd[k] = lab
    return cine, lge, gd


def write_case(folder: Path, case_id: str, labelled: bool = True, lv: tuple[float, float] = LV,
               cine_shape: tuple[int, int, int] | None = None, seed: int = 0) -> None:
    import nibabel as nib

    folder.mkdir(parents=True, exist_ok=True)
    cine, lge, gd = phantom(lv, seed=seed)
    if cine_shape is not None:
        cine = np.zeros(cine_shape, np.int16)
    th = 0.4  # oblique, like MyoPS
    rot = np.array([[np.cos(th), -np.sin(th), 0], [np.sin(th), np.cos(th), 0], [0, 0, 1]])
    aff = np.eye(4)
    aff[:3, :3] = rot @ np.diag([SPACING, SPACING, 12.0])
    aff[:3, 3] = [-90.0, -70.0, 15.0]
    items = [("C0", cine), ("LGE", lge)] + ([("gd", gd)] if labelled else [])
    for name, arr in items:
        nib.save(nib.Nifti1Image(np.transpose(arr, (2, 1, 0)), aff), folder / f"{case_id}_{name}.nii.gz")


def write_myops_cine(root: Path, n_labelled: int = 4, n_unlabelled: int = 2) -> Path:
    """MyoPS-like layout with cine: root/myops2020/Case300K_{C0,LGE,gd} and unlabelled/Case400K_{C0,LGE}."""
    base = root / "myops2020"
    for i in range(n_labelled):
        write_case(base, f"Case{3001 + i}", lv=(LV[0] + 4 * i, LV[1] - 3 * i), seed=i)
    for i in range(n_unlabelled):
        write_case(base / "unlabelled", f"Case{4001 + i}", labelled=False, lv=(LV[0] - 5 * i, LV[1]), seed=10 + i)
    return root


@pytest.fixture(scope="module")
def cine_root(tmp_path_factory) -> Path:
    return write_myops_cine(tmp_path_factory.mktemp("cine"))


@pytest.fixture(scope="module")
def slices(cine_root) -> cs.CineLgeSlices:
    return cs.load_slices(cine_root)


def _expected_centre(lv: tuple[float, float]) -> tuple[float, float]:
    """LV centre on the 1.25 mm grid (pixel centres at (i + 0.5) * spacing on both grids)."""
    return tuple((v + 0.5) * SPACING / pp.TARGET_SPACING_MM - 0.5 for v in lv)  # type: ignore[return-value]


def test_slices_follow_the_roi_contract(slices):
    n = 6 * SHAPE[0]
    assert slices.cine.shape == slices.lge.shape == slices.masks.shape == (n, pp.ROI_SIZE, pp.ROI_SIZE)
    assert slices.cine.dtype == slices.lge.dtype == np.float32 and slices.masks.dtype == np.uint8
    for stack in (slices.cine, slices.lge):
        assert stack.min() >= 0.0 and stack.max() <= pp.CLIP_MAX
        assert 0.3 < np.percentile(stack[stack > 0.05], 99) <= pp.CLIP_MAX  # normalised, not raw int16
    assert len(slices.case_ids) == n and slices.slice_index.tolist() == list(range(SHAPE[0])) * 6
    assert slices.cases == ["Case3001", "Case3002", "Case3003", "Case3004", "Case4001", "Case4002"]
    assert slices.labelled.tolist() == [True] * 12 + [False] * 6
    # raw ROIs kept beside: normalising a case's raw stack gives its slices; per_image normalises each raw slice
    first = np.array([c == "Case3001" for c in slices.case_ids])
    np.testing.assert_allclose(pp.normalize_intensity(slices.lge_raw[first]), slices.lge[first], atol=1e-6)
    np.testing.assert_allclose(slices.per_image("cine")[4], pp.normalize_intensity(slices.cine_raw[4]), atol=1e-6)


def test_labelled_cases_are_lv_centred_and_labels_mapped(slices):
    for case in slices.cases[:4]:
        sel = np.array([c == case for c in slices.case_ids])
        assert slices.centre_source[case] == "mask"
        r, c = ndimage.center_of_mass((slices.masks[sel] > 0).any(axis=0))
        assert abs(r - pp.ROI_SIZE / 2) <= 1.5 and abs(c - pp.ROI_SIZE / 2) <= 1.5
    lab = slices.masks[slices.labelled]
    assert set(np.unique(lab).tolist()) == {0, 1, 2, 3}  # 600 (RV) -> 0, 1220 (edema) -> 2, no 4
    # the cavity (label 1) is the bright blood pool in both sequences: the mask lies on the images
    cav, wall = lab == 1, lab == 2
    for stack in (slices.cine[slices.labelled], slices.lge[slices.labelled]):
        assert stack[cav].mean() > 2 * stack[wall].mean()


def test_unlabelled_cases_centred_by_heuristic_near_the_lv(slices):
    for i, case in enumerate(("Case4001", "Case4002")):
        assert slices.centre_source[case] == "heuristic"
        exp = _expected_centre((LV[0] - 5 * i, LV[1]))
        got = slices.centres[case]
        assert np.hypot(got[0] - exp[0], got[1] - exp[1]) * pp.TARGET_SPACING_MM < 10.0  # mm
        assert not slices.masks[np.array([c == case for c in slices.case_ids])].any()


def test_network_centre_uses_the_given_localiser(cine_root):
    """A callable localiser is run on the LGE stack for unlabelled cases (inference path)."""
    calls = []

    def localiser(x: np.ndarray) -> np.ndarray:
        calls.append(x.shape)
        prob = np.zeros(x.shape, np.float32)
        prob[:, 40:50, 60:70] = 1.0  # a blob the heuristic would never choose
        return prob

    got = cs.load_slices(cine_root, only_cases=["Case4001"], unlabelled_centre=localiser)
    assert calls and got.centre_source == {"Case4001": "network"}
    heur = cs.load_slices(cine_root, only_cases=["Case4001"]).centres["Case4001"]
    assert np.hypot(*np.subtract(got.centres["Case4001"], heur)) > 10
    with pytest.raises(ValueError, match="unlabelled_centre"):
        cs.load_slices(cine_root, only_cases=["Case4001"], unlabelled_centre="magic")


def test_split_and_exclusion_by_case(cine_root, slices):
    train, held = slices.split(["Case3002", "Case3004"])
    assert held.cases == ["Case3002", "Case3004"] and len(held) == 2 * SHAPE[0]
    assert not set(train.cases) & set(held.cases) and len(train) + len(held) == len(slices)
    np.testing.assert_array_equal(held.masks, slices.masks[np.isin(slices.case_ids, held.cases)])
    assert set(held.centre_source) == set(held.cases)
    labelled_only = cs.load_slices(cine_root, include_unlabelled=False, exclude_cases=["Case3001"])
    assert labelled_only.cases == ["Case3002", "Case3003", "Case3004"] and labelled_only.labelled.all()


def test_mismatched_cine_grid_is_refused(tmp_path):
    write_case(tmp_path / "myops2020", "Case3001", cine_shape=(3, 180, 200))
    with pytest.raises(ValueError, match="same grid"):
        cs.load_slices(tmp_path)


def test_missing_folder_raises(tmp_path):
    with pytest.raises(FileNotFoundError):
        cs.load_slices(tmp_path / "nowhere")


def test_shared_myops_cine_slices(myops_root):
    """Real MyoPS: every case loads (C0, LGE and gd on one grid), labelled cases are LV-centred."""
    if not (Path(myops_root) / "myops2020" / "Case3001_C0.nii.gz").exists():
        missing("data", "MyoPS cine (_C0) files not in the shared data")
    d = cs.load_slices(myops_root)
    assert d.cine.shape == d.lge.shape == (len(d), pp.ROI_SIZE, pp.ROI_SIZE)
    assert d.labelled.any() and (~d.labelled).any()
    for case in d.cases:
        sel = np.array([c == case for c in d.case_ids])
        if d.labelled[sel][0]:
            r, c = ndimage.center_of_mass((d.masks[sel] > 0).any(axis=0))
            assert abs(r - 64) <= 1.5 and abs(c - 64) <= 1.5, case
    assert set(d.centre_source.values()) <= {"mask", "heuristic"}
