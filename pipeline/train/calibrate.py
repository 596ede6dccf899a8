"""Carry a quality threshold chosen on cross-validation over to the ensemble's score scale.

In cross-validation each case is scored by one fold model, the only member that did not see it;
the shipped ensemble averages every member's softmax, which spreads the probabilities wherever
members disagree, so its quality score (``models.segment.quality_from_probabilities``) runs
lower than one member's on the same series (measured on v0.3 folds 0+1: median -0.0135 with two
members). A CV threshold used unchanged would flag most series. The shift is measured on
volumes that *no* member trained on (MyoPS ``unlabelled/``: no labels needed, only scores): per
volume, ensemble score minus the mean of the members' own scores from the same softmax; the
median shift is added to the CV threshold.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

@dataclass(frozen=True)
class ScoreShift:
    median: float
    p10: float
    p90: float
    n_volumes: int
    source: str

    def to_dict(self) -> dict[str, object]:
        return {"median": round(self.median, 4), "p10": round(self.p10, 4),
                "p90": round(self.p90, 4), "n_volumes": self.n_volumes, "source": self.source}


def unlabelled_volumes(data_dir: str | None) -> list[Path]:
    from pipeline.datasets.paths import myops_dir

    return sorted((myops_dir(data_dir) / "unlabelled").glob("*_LGE.nii*"))


def ensemble_shift(weights: Path, volumes: list[Path], runtime: str = "onnx",
                   progress: bool = True) -> ScoreShift:
    """Median over ``volumes`` of (ensemble score - mean member score) for the ensemble in
    ``weights``; raises ValueError without volumes or with a single-member model."""
    from tqdm import tqdm

    from models import preprocess as pp
    from models.segment import load_model, quality_from_probabilities
    from pipeline.datasets.myops import read_nifti_volume

    if not volumes:
        raise ValueError("no volumes to measure the ensemble's score shift on")
    info, seg = load_model(weights, runtime)
    if len(info.members) < 2:
        raise ValueError(f"{weights} is not an ensemble (members: {info.members})")
    shifts = []
    for path in tqdm(volumes, desc="quality score shift", unit="volume", disable=not progress):
        x, _ = pp.preprocess_volume(read_nifti_volume(path), localiser=seg.localiser)
        probs = seg.member_probabilities(x)
        ens = quality_from_probabilities(probs, None).score
        own = np.mean([quality_from_probabilities(p[None], None).score for p in probs])
        shifts.append(ens - float(own))
    s = np.asarray(shifts)
    return ScoreShift(float(np.median(s)), float(np.percentile(s, 10)),
                      float(np.percentile(s, 90)), int(s.size), str(volumes[0].parent))
