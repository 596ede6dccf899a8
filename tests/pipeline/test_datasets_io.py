"""EMIDEC and MyoPS readers: synthetic layouts always, the shared data when present."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from pipeline.datasets import emidec, myops, paths


def test_data_root_resolution(monkeypatch, tmp_path):
    monkeypatch.delenv(paths.ENV_VAR, raising=False)
    assert paths.data_root() == (paths.REPO_ROOT / ".." / "shared" / "data").resolve()
    monkeypatch.setenv(paths.ENV_VAR, str(tmp_path))
    assert paths.data_root() == tmp_path
    assert paths.data_root(tmp_path / "x") == tmp_path / "x"  # explicit wins
    (tmp_path / "emidec" / "images").mkdir(parents=True)
    assert paths.emidec_dir(tmp_path) == tmp_path / "emidec"
    assert paths.emidec_dir(tmp_path / "emidec") == tmp_path / "emidec"  # the folder itself


def test_myops_label_map():
    gd = np.array([0, 200, 500, 600, 1220, 2221, 7], np.int16)
    np.testing.assert_array_equal(myops.map_labels(gd), [0, 2, 1, 0, 2, 3, 0])


def test_patient_alias_and_groups():
    assert emidec.patient_of("Case_P072") == "Case_P059"
    assert emidec.patient_of("Case_P001") == "Case_P001"
    assert emidec.group_of("Case_N010") == "normal" and emidec.group_of("Case_P010") == "pathological"


def test_synthetic_emidec_reads(synthetic_data):
    ids = emidec.list_cases(synthetic_data)
    assert ids[0] == "Case_N000" and len(ids) == 8
    c = emidec.load_case("Case_P000", synthetic_data)
    assert c.images.shape == c.masks.shape == (3, 160, 160)
    assert c.has_infarct and c.has_mvo and c.group == "pathological"
    with pytest.raises(KeyError):
        emidec.load_cases(["Case_X999"], synthetic_data)


def test_synthetic_myops_reads(synthetic_data):
    assert myops.list_cases(synthetic_data) == ["Case3001", "Case3002"]
    c = myops.load_case("Case3001", synthetic_data)
    assert c.volume.pixels.shape == c.labels.shape
    assert c.volume.pixel_spacing == pytest.approx((0.8, 0.8))
    assert c.volume.slice_spacing == pytest.approx(10.0)
    assert set(np.unique(c.labels)) <= {0, 1, 2, 3}
    assert (c.labels == 3).any()


def test_real_emidec(emidec_root):
    files = emidec.slice_files(emidec_root)
    assert len(files) == 80 and sum(len(v) for v in files.values()) == 572
    c = emidec.load_case("Case_P059", emidec_root)
    assert c.images.dtype == np.uint8 and c.images.shape[1:] == (256, 256)
    assert c.masks.max() <= 4


def test_real_myops_matches_manifest(myops_root):
    rows = {r["case"]: r for r in csv.DictReader(open(myops_root / "myops2020" / "cases.csv"))}
    c = myops.load_case("Case3002", myops_root)
    r = rows["Case3002"]
    counts = np.bincount(c.labels.ravel(), minlength=4)
    assert counts[1] == int(r["vox_500"])
    assert counts[2] == int(r["vox_200"]) + int(r["vox_1220"])
    assert counts[3] == int(r["vox_2221"])
