"""Shared fixtures: data location, DCMTK, a node core/SCP on loopback, the synthetic study, and the
LGENODE_REQUIRE rule (a missing tool or data set fails instead of skipping; see tests/support/require.py)."""

from __future__ import annotations

import os
import shutil
import socket
from pathlib import Path
from typing import Iterator

import pytest

from tests.support.require import available, missing, required, requires, strict

REPO = Path(__file__).resolve().parents[1]


def data_dir() -> Path:
    from pipeline.datasets.paths import data_root

    return data_root()


def myops_dir() -> Path:
    from pipeline.datasets.paths import myops_dir as _myops_dir

    return _myops_dir()


# The real-data tier: tests on the research data (``-m data`` selects them; without the data
# they skip, or fail under LGENODE_REQUIRE=data). Everything else runs on the synthetic study.
needs_myops = pytest.mark.data
needs_dcmtk = requires("dcmtk", "DCMTK not installed (/usr/bin/storescu)")


def pytest_configure(config: pytest.Config) -> None:
    try:
        required()  # a typo in LGENODE_REQUIRE fails at once
    except ValueError as exc:
        raise pytest.UsageError(str(exc)) from exc


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("data") is not None and not available("data"):
        missing("data", "research data not found (set LGENODE_DATA_DIR)")
    for mark in item.iter_markers("requires"):
        component, reason = mark.args[0], (mark.args[1] if len(mark.args) > 1 else f"{mark.args[0]} not available")
        if not available(component):
            missing(component, reason)


_skipped: list[str] = []


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.skipped and not hasattr(report, "wasxfail"):
        _skipped.append(report.nodeid)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    # Under LGENODE_REQUIRE every tier must run: a skip for any reason fails the session.
    if strict() and _skipped and session.exitstatus == 0:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:  # type: ignore[no-untyped-def]
    if strict() and _skipped:
        terminalreporter.write_line(f"LGENODE_REQUIRE is set and {len(_skipped)} test(s) skipped: failing the run",
                                    red=True, bold=True)


def dcmtk_env() -> dict[str, str]:
    # DCMTK 3.6.7 crawls at ~20 images/s on loopback without TCP_NODELAY.
    return dict(os.environ, TCP_NODELAY="1")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def node_config(tmp_path: Path):  # type: ignore[no-untyped-def]
    """A factory for validated node configs rooted in tmp_path."""
    from node.config import NodeConfig

    def make(**sections):  # type: ignore[no-untyped-def]
        base = {
            "dicom": {"port": 0, "allowed_peers": [{"ae_title": "STORESCU"}, {"ae_title": "LGESEND"},
                                                     {"ae_title": "ECHOSCU"}, {"ae_title": "TESTSCU"}]},
            "storage": {"root": str(tmp_path / "store"), "min_free_mb": 1},
            "database": {"url": f"sqlite:///{tmp_path / 'node.db'}"},
            "series": {"idle_seconds": 1, "sweep_interval_seconds": 0.2},
            "jobs": {"poll_interval_seconds": 0.1, "retry_backoff_seconds": 0.1},
            "api": {"enabled": False},
        }
        for k, v in sections.items():
            base.setdefault(k, {}).update(v)
        return NodeConfig.model_validate(base)

    return make


@pytest.fixture
def core(node_config):  # type: ignore[no-untyped-def]
    from node.core import build_core

    c = build_core(node_config())
    yield c
    c.engine.dispose()


@pytest.fixture
def scp(core) -> Iterator[object]:  # type: ignore[no-untyped-def]
    from node.receive.scp import StorageSCP

    server = StorageSCP(core.cfg.dicom, core.store)
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def study_series(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A synthetic LGE + cine study on disk (`dicomstudy.synthetic`): runs anywhere."""
    from dicomstudy.synthetic import write_synthetic_study

    out = tmp_path_factory.mktemp("synthetic-study")
    study = write_synthetic_study(out, seed=1)
    return {"lge": study.lge_dir, "cine": study.cine_dir, "root": out}


@pytest.fixture(scope="session")
def myops_series(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """DICOM LGE + cine series built from the real MyoPS Case3001 (real pixels, oblique geometry)."""
    if not (myops_dir() / "Case3001_LGE.nii.gz").exists():
        missing("data", "MyoPS data not found (set LGENODE_DATA_DIR)")
    from pipeline.datasets.dicomize import dicomize_case

    out = tmp_path_factory.mktemp("myops3001")
    dicomize_case(str(myops_dir() / "Case3001_LGE.nii.gz"), out, seed=1, matrix=256)
    return {"lge": out / "LGE_SAX", "cine": out / "CINE_SAX", "root": out}


def dataset_bytes(path: Path) -> bytes:
    """The encoded dataset of a DICOM file, without preamble and file meta."""
    from pydicom.filereader import read_preamble, _read_file_meta_info

    with open(path, "rb") as f:
        read_preamble(f, False)
        _read_file_meta_info(f)
        return f.read()


def which_dcmtk(name: str) -> str:
    path = f"/usr/bin/{name}"
    if not Path(path).exists():
        missing("dcmtk", f"{path} not installed")
    return path


__all__ = ["dataset_bytes", "dcmtk_env", "free_port", "missing", "needs_dcmtk", "needs_myops", "requires", "shutil",
           "which_dcmtk"]
