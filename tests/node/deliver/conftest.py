"""Fixtures: encoded objects of a real MyoPS case (SEG, SR, PDF) plus its MR source images."""

from __future__ import annotations

import datetime

import pytest

from node.encode import AlgorithmInfo
from tests.support.myops_series import build_case_series, encode_case
from tests.support.orthanc import orthanc  # noqa: F401  (fixture)


@pytest.fixture(scope="session")
def deliver_case(tmp_path_factory):
    series = build_case_series("Case3011", tmp_path_factory.mktemp("deliver") / "LGE")  # 2 slices
    algorithm = AlgorithmInfo(name="lgenode-lge-unet", version="0.1.0-test")
    _, _, objects = encode_case(series, algorithm, created=datetime.datetime(2026, 1, 1, 12, 0, 0))
    return series, objects
