"""Cross-validation folds grouped by patient and stratified, stored as JSON.

Stratum of a patient: ``normal``, ``infarct`` (pathological without no-reflow) or ``mvo``
(no-reflow present in any of its cases). Within each stratum patients are shuffled with the
seed and dealt to the fold that currently holds the fewest patients of that stratum (ties: the
fewest slices overall, then the lowest index), so strata and slice counts are balanced and the
result depends only on the case list and the seed. Cases of one patient (see
``emidec.PATIENT_ALIASES``) always share a fold.

The JSON file is the source of truth for later experiments: write it once, commit it, reuse it.
"""

from __future__ import annotations

import json
import os
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

FORMAT_VERSION = 1
STRATA = ("normal", "infarct", "mvo")
DEFAULT_FOLDS_FILE = Path(__file__).resolve().parents[1] / "configs" / "emidec_folds.json"


@dataclass(frozen=True)
class CaseInfo:
    case_id: str
    patient_id: str
    stratum: str  # one of STRATA
    n_slices: int = 1


def make_folds(cases: list[CaseInfo], n_folds: int = 5, seed: int = 0) -> dict[str, object]:
    """Assign every case to one of ``n_folds`` validation folds; returns the JSON document."""
    if n_folds < 2:
        raise ValueError("n_folds must be >= 2")
    patients: dict[str, list[CaseInfo]] = defaultdict(list)
    for c in cases:
        patients[c.patient_id].append(c)
    if len(patients) < n_folds:
        raise ValueError(f"{len(patients)} patients cannot fill {n_folds} folds")

    def stratum(members: list[CaseInfo]) -> str:
        return max((m.stratum for m in members), key=STRATA.index)

    rng = np.random.default_rng(seed)
    fold_cases: list[list[str]] = [[] for _ in range(n_folds)]
    fold_slices = np.zeros(n_folds, dtype=int)
    for s in STRATA:
        pids = sorted(p for p, m in patients.items() if stratum(m) == s)
        pids = [pids[i] for i in rng.permutation(len(pids))]
        count = np.zeros(n_folds, dtype=int)
        for p in pids:
            k = min(range(n_folds), key=lambda f: (count[f], fold_slices[f], f))
            count[k] += 1
            for m in patients[p]:
                fold_cases[k].append(m.case_id)
                fold_slices[k] += m.n_slices
    return {
        "version": FORMAT_VERSION,
        "seed": seed,
        "n_folds": n_folds,
        "grouping": "patient",
        "strata": {c.case_id: c.stratum for c in sorted(cases, key=lambda c: c.case_id)},
        "patients": {c.case_id: c.patient_id for c in sorted(cases, key=lambda c: c.case_id)
                     if c.patient_id != c.case_id},
        "folds": [{"fold": k, "val": sorted(v), "n_slices": int(fold_slices[k])}
                  for k, v in enumerate(fold_cases)],
    }


def emidec_case_infos(root: str | os.PathLike[str] | None = None) -> list[CaseInfo]:
    """Case list with strata read from the EMIDEC masks (or ``cases.csv`` when present)."""
    from pipeline.datasets import emidec

    files = emidec.slice_files(root)
    csv_counts = _read_cases_csv(emidec.emidec_dir(root) / "cases.csv")
    infos = []
    for case_id, names in files.items():
        if case_id in csv_counts:
            has_inf, has_mvo = csv_counts[case_id]
        else:
            masks = emidec.load_case(case_id, root, names).masks
            has_inf, has_mvo = bool((masks >= 3).any()), bool((masks == 4).any())
        s = "mvo" if has_mvo else ("infarct" if has_inf or emidec.group_of(case_id) != "normal"
                                    else "normal")
        infos.append(CaseInfo(case_id, emidec.patient_of(case_id), s, len(names)))
    return infos


def _read_cases_csv(path: Path) -> dict[str, tuple[bool, bool]]:
    if not path.is_file():
        return {}
    import csv

    out = {}
    with path.open(newline="") as f:
        for row in csv.DictReader(f):
            try:
                out[row["case"]] = (int(row["px_label3"]) > 0, int(row["px_label4"]) > 0)
            except (KeyError, ValueError):
                return {}
    return out


def save_folds(doc: dict[str, object], path: str | os.PathLike[str]) -> Path:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(json.dumps(doc, indent=1) + "\n")
    return p


def load_folds(path: str | os.PathLike[str]) -> dict[str, object]:
    doc = json.loads(Path(path).read_text())
    if doc.get("version") != FORMAT_VERSION or "folds" not in doc:
        raise ValueError(f"{path}: not a folds file (version {FORMAT_VERSION})")
    return doc


def split(doc: dict[str, object], fold: int) -> tuple[list[str], list[str]]:
    """(training case ids, validation case ids) of fold ``fold``."""
    folds = doc["folds"]  # type: ignore[index]
    if not 0 <= fold < len(folds):  # type: ignore[arg-type]
        raise ValueError(f"fold {fold} not in 0..{len(folds) - 1}")  # type: ignore[arg-type]
    val = list(folds[fold]["val"])  # type: ignore[index]
    train = sorted(c for k, f in enumerate(folds) if k != fold for c in f["val"])  # type: ignore
    return train, val


def load_or_create(path: str | os.PathLike[str] | None, root: str | os.PathLike[str] | None,
                   n_folds: int = 5, seed: int = 0) -> dict[str, object]:
    """Read the folds file, creating it from the EMIDEC case list (and the labelled MyoPS cases,
    when present) when it does not exist."""
    p = Path(path) if path else DEFAULT_FOLDS_FILE
    if p.is_file():
        return load_folds(p)
    doc = make_folds(emidec_case_infos(root), n_folds=n_folds, seed=seed)
    scar = _myops_scar_if_present(root)
    if scar:
        assign_myops(doc, scar, seed=seed)
    save_folds(doc, p)
    return doc


def _myops_scar_if_present(root: str | os.PathLike[str] | None) -> dict[str, float]:
    from pipeline.datasets import myops

    try:
        return myops_scar_shares(root) if myops.list_cases(root) else {}
    except FileNotFoundError:
        return {}


# --------------------------------------------------------------------------------------------
# MyoPS cases in the same folds (real scanner geometry and intensities in every validation fold)
# --------------------------------------------------------------------------------------------
def assign_myops(doc: dict[str, object], myops_scar: dict[str, float], seed: int = 0
                 ) -> dict[str, object]:
    """Add ``val_myops`` to every fold of ``doc``: the MyoPS cases dealt over the folds.

    Parameters
    ----------
    doc:
        A folds document (``make_folds``); its EMIDEC assignment is kept unchanged.
    myops_scar:
        MyoPS case id -> scar share of the myocardium; cases are ranked by it and dealt in
        snake order (0, 1, .., k-1, k-1, .., 0, ...) so every fold gets a similar range of
        scar burden. Ties are broken by a seeded shuffle.

    Returns
    -------
    The same document, modified in place and returned.
    """
    folds = doc["folds"]  # type: ignore[index]
    k = len(folds)  # type: ignore[arg-type]
    rng = np.random.default_rng(seed)
    ids = sorted(myops_scar)
    ids = [ids[i] for i in rng.permutation(len(ids))]
    ranked = sorted(ids, key=lambda c: myops_scar[c])
    for f in folds:  # type: ignore[union-attr]
        f["val_myops"] = []
    for i, case_id in enumerate(ranked):
        lap, pos = divmod(i, k)
        fold = pos if lap % 2 == 0 else k - 1 - pos
        folds[fold]["val_myops"].append(case_id)  # type: ignore[index]
    for f in folds:  # type: ignore[union-attr]
        f["val_myops"] = sorted(f["val_myops"])
    doc["myops_scar"] = {c: round(float(v), 4) for c, v in sorted(myops_scar.items())}
    return doc


def validation_ids(doc: dict[str, object], fold: int, fmt: str) -> list[str]:
    """Fold ``fold``'s validation case ids in data set ``fmt``: EMIDEC cases ("emidec-png") or the
    MyoPS volumes dealt to that fold ("myops-nifti"; empty without a MyoPS assignment)."""
    if fmt == "myops-nifti":
        return split_myops(doc, fold)[1]
    return split(doc, fold)[1]


def split_myops(doc: dict[str, object], fold: int | None) -> tuple[list[str], list[str]]:
    """(training, validation) MyoPS case ids of ``fold`` (``None``: all cases train); empty
    lists when the folds file has no MyoPS assignment."""
    folds = doc["folds"]  # type: ignore[index]
    if not any("val_myops" in f for f in folds):  # type: ignore[union-attr]
        return [], []
    if fold is None:
        return sorted(c for f in folds for c in f.get("val_myops", [])), []  # type: ignore
    val = list(folds[fold].get("val_myops", []))  # type: ignore[index]
    train = sorted(c for j, f in enumerate(folds) if j != fold  # type: ignore[arg-type]
                   for c in f.get("val_myops", []))
    return train, val


def myops_scar_shares(root: str | os.PathLike[str] | None = None) -> dict[str, float]:
    """MyoPS case id -> scar voxels / myocardium voxels (200 + 1220 + 2221), from ``cases.csv``
    (written with the data) or from the label files."""
    import csv

    from pipeline.datasets import myops
    from pipeline.datasets.paths import myops_dir

    out: dict[str, float] = {}
    path = myops_dir(root) / "cases.csv"
    if path.is_file():
        with path.open(newline="") as f:
            for row in csv.DictReader(f):
                try:
                    myo = int(row["vox_200"]) + int(row["vox_1220"]) + int(row["vox_2221"])
                    out[row["case"]] = int(row["vox_2221"]) / max(myo, 1)
                except (KeyError, ValueError):
                    out = {}
                    break
    labelled = set(myops.list_cases(root))
    if not labelled <= set(out):
        for c in sorted(labelled):
            lab = myops.load_case(c, root).labels
            out[c] = float((lab == 3).sum()) / max(int((lab >= 2).sum()), 1)
    return {c: v for c, v in out.items() if c in labelled}
