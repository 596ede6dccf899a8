"""Fixtures: one real MyoPS case as a DICOM series, its measurements and encoded objects."""

from __future__ import annotations

import datetime

import pytest

from node.encode import AlgorithmInfo
from tests.support.myops_series import build_case_series, encode_case

CASE = "Case3001"
CREATED = datetime.datetime(2026, 1, 2, 3, 4, 5)


@pytest.fixture(scope="session")
def algorithm() -> AlgorithmInfo:
    return AlgorithmInfo(name="lgenode-lge-unet", version="0.1.0-test",
                         source="models/weights/MODEL_CARD.md")


@pytest.fixture(scope="session")
def case_series(tmp_path_factory):
    return build_case_series(CASE, tmp_path_factory.mktemp("myops") / "LGE")


@pytest.fixture(scope="session")
def _encoded_case(case_series, algorithm):
    return encode_case(case_series, algorithm, created=CREATED)


@pytest.fixture(scope="session")
def results(_encoded_case):
    m, aha, _ = _encoded_case
    return m, aha


@pytest.fixture(scope="session")
def encoded(_encoded_case):
    return tuple(_encoded_case[2])
