"""Fixtures: a DICOM series with known labels (the synthetic study, and a real MyoPS case in the
real-data tier), its measurements and encoded objects. Every test using them runs on both."""

from __future__ import annotations

import datetime

import pytest

from models.segment import Quality
from node.encode import AlgorithmInfo
from tests.support.case_series import build_case_series, build_synthetic_series, encode_case

CASE = "Case3001"
CREATED = datetime.datetime(2026, 1, 2, 3, 4, 5)
# A doubtful result: every encoded object must carry the score and the review flag.
QUALITY = Quality(score=0.6123, members=5, infarct_pct_spread=4.56, threshold=0.8,
                  needs_review=True)


@pytest.fixture(scope="session")
def algorithm() -> AlgorithmInfo:
    return AlgorithmInfo(name="lgenode-lge-unet", version="0.1.0-test",
                         source="models/weights/MODEL_CARD.md")


@pytest.fixture(scope="session", params=["synthetic", pytest.param(CASE, marks=pytest.mark.data)])
def case_series(request, tmp_path_factory):
    if request.param == "synthetic":
        return build_synthetic_series(tmp_path_factory.mktemp("synthetic") / "LGE")
    return build_case_series(CASE, tmp_path_factory.mktemp("myops") / "LGE")


@pytest.fixture(scope="session")
def _encoded_case(case_series, algorithm):
    return encode_case(case_series, algorithm, created=CREATED, quality=QUALITY)


@pytest.fixture(scope="session")
def results(_encoded_case):
    m, aha, _ = _encoded_case
    return m, aha


@pytest.fixture(scope="session")
def encoded(_encoded_case):
    return tuple(_encoded_case[2])
