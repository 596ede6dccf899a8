"""Fixtures: encoded objects (SEG, SR, PDF) of a small synthetic series plus its MR source images."""

from __future__ import annotations

import datetime

import pytest

from node.encode import AlgorithmInfo
from dicomstudy.synthetic import Phantom
from tests.support.case_series import build_synthetic_series, encode_case
from tests.support.orthanc import orthanc  # noqa: F401  (fixture)


@pytest.fixture(scope="session")
def deliver_case(tmp_path_factory):
    series = build_synthetic_series(tmp_path_factory.mktemp("deliver") / "LGE", seed=11,
                                    phantom=Phantom(slices=3, rows=128, cols=132, pixel_spacing=2.0))
    algorithm = AlgorithmInfo(name="lgenode-lge-unet", version="0.1.0-test")
    _, _, objects = encode_case(series, algorithm, created=datetime.datetime(2026, 1, 1, 12, 0, 0))
    return series, objects
