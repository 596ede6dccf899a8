"""Cross-validation folds: grouping, stratification, determinism, JSON round trip."""

from __future__ import annotations

from collections import Counter

import pytest

from pipeline.datasets import folds as F


def _infos() -> list[F.CaseInfo]:
    infos = [F.CaseInfo(f"Case_N{i:03d}", f"Case_N{i:03d}", "normal", 6) for i in range(13)]
    infos += [F.CaseInfo(f"Case_P{i:03d}", f"Case_P{i:03d}", "infarct", 7) for i in range(11)]
    infos += [F.CaseInfo(f"Case_P{i:03d}", f"Case_P{i:03d}", "mvo", 8) for i in range(11, 27)]
    # Two cases of one patient, different strata: the patient is 'mvo' (the more severe).
    infos.append(F.CaseInfo("Case_P099", "Case_P011", "infarct", 5))
    return infos


def test_every_case_once_and_patients_together():
    infos = _infos()
    doc = F.make_folds(infos, n_folds=5, seed=3)
    all_val = [c for f in doc["folds"] for c in f["val"]]
    assert sorted(all_val) == sorted(i.case_id for i in infos)
    fold_of = {c: f["fold"] for f in doc["folds"] for c in f["val"]}
    assert fold_of["Case_P099"] == fold_of["Case_P011"]
    assert doc["patients"] == {"Case_P099": "Case_P011"}


def test_strata_balanced_within_one():
    doc = F.make_folds(_infos(), n_folds=5, seed=0)
    strata = doc["strata"]
    patient_of = {c: c for c in strata} | doc["patients"]
    for s in F.STRATA:
        per_fold = []
        for f in doc["folds"]:
            pats = {patient_of[c] for c in f["val"] if strata[c] == s and patient_of[c] == c}
            per_fold.append(len(pats))
        assert max(per_fold) - min(per_fold) <= 1, (s, per_fold)


def test_deterministic_with_seed_and_seed_matters():
    a = F.make_folds(_infos(), seed=7)
    b = F.make_folds(list(reversed(_infos())), seed=7)  # input order must not matter
    assert a == b
    c = F.make_folds(_infos(), seed=8)
    assert [f["val"] for f in a["folds"]] != [f["val"] for f in c["folds"]]


def test_json_round_trip_and_split(tmp_path):
    doc = F.make_folds(_infos(), n_folds=4, seed=1)
    p = F.save_folds(doc, tmp_path / "f.json")
    back = F.load_folds(p)
    assert back == doc
    train, val = F.split(back, 2)
    assert set(val) == set(doc["folds"][2]["val"])
    assert not set(train) & set(val)
    assert len(train) + len(val) == len(_infos())
    with pytest.raises(ValueError):
        F.split(back, 4)
    (tmp_path / "bad.json").write_text('{"folds": []}')
    with pytest.raises(ValueError):
        F.load_folds(tmp_path / "bad.json")


def test_too_few_patients():
    with pytest.raises(ValueError):
        F.make_folds(_infos()[:3], n_folds=5)


def test_real_emidec_folds(emidec_root):
    infos = F.emidec_case_infos(emidec_root)
    assert len(infos) == 80
    counts = Counter(i.stratum for i in infos)
    assert counts == {"normal": 26, "mvo": 32, "infarct": 22}  # SOURCES.md: 32 with no-reflow
    doc = F.make_folds(infos, seed=0)
    fold_of = {c: f["fold"] for f in doc["folds"] for c in f["val"]}
    assert fold_of["Case_P059"] == fold_of["Case_P072"]
    sizes = [len(f["val"]) for f in doc["folds"]]
    assert max(sizes) - min(sizes) <= 2


def test_committed_folds_file_matches_data(emidec_root):
    if not F.DEFAULT_FOLDS_FILE.exists():
        pytest.skip("no committed folds file")
    doc = F.load_folds(F.DEFAULT_FOLDS_FILE)
    expected = F.make_folds(F.emidec_case_infos(emidec_root), n_folds=doc["n_folds"],
                            seed=doc["seed"])
    if (emidec_root / "myops2020").is_dir():
        F.assign_myops(expected, F.myops_scar_shares(emidec_root), seed=doc["seed"])
    assert doc == expected


def test_myops_dealt_over_folds_without_changing_emidec():
    from pipeline.datasets.folds import assign_myops, make_folds, split, split_myops

    doc = make_folds(_infos(), n_folds=5, seed=0)
    before = [list(f["val"]) for f in doc["folds"]]
    scar = {f"Case30{i:02d}": i / 100 for i in range(1, 16)}
    assign_myops(doc, scar, seed=0)
    assert [list(f["val"]) for f in doc["folds"]] == before
    vals = [f["val_myops"] for f in doc["folds"]]
    assert sorted(c for v in vals for c in v) == sorted(scar)
    assert [len(v) for v in vals] == [3] * 5
    # snake order by scar share: every fold gets a low, a middle and a high case
    for v in vals:
        shares = sorted(scar[c] for c in v)
        assert shares[0] <= 0.05 and 0.06 <= shares[1] <= 0.10 and shares[2] >= 0.11
    tr, va = split_myops(doc, 2)
    assert set(tr).isdisjoint(va) and len(tr) == 12 and va == vals[2]
    assert split_myops(doc, None) == (sorted(scar), [])
    assert split(doc, 2)[1] == before[2]
    # evaluation picks the fold's validation cases of the data set it scores
    from pipeline.datasets.folds import validation_ids

    assert validation_ids(doc, 2, "myops-nifti") == vals[2]
    assert validation_ids(doc, 2, "emidec-png") == before[2]


def test_committed_folds_file_has_three_myops_per_fold():
    from pipeline.datasets.folds import DEFAULT_FOLDS_FILE, load_folds

    doc = load_folds(DEFAULT_FOLDS_FILE)
    vals = [f["val_myops"] for f in doc["folds"]]
    assert [len(v) for v in vals] == [3] * 5
    assert sorted(c for v in vals for c in v) == [f"Case30{i:02d}" for i in range(1, 16)]
