"""What a test needs from the machine, and whether its absence is a skip or an error.

By default a test whose tool or data set is absent skips with the reason. ``LGENODE_REQUIRE``
(a comma-separated list of the components below, or ``all``) turns that into a failure for the
listed components; CI (``.ci/run``) sets it, and then any skip at all fails the run
(`tests.conftest.pytest_sessionfinish`), so a green CI cannot hide a tier.

Components: ``dcmtk`` (/usr/bin/storescu ...), ``dicom3tools`` (dciodvfy), ``orthanc`` (with
the DICOMweb plugin), ``postgres`` (server binaries or ``LGENODE_TEST_PG_URL``), ``chromium``,
``node`` (Node.js + npm), ``ghostscript`` (gs), ``keras`` (the ``train`` extra), ``data``
(the research data under ``../shared/data`` or ``$LGENODE_DATA_DIR``).
"""

from __future__ import annotations

import glob
import importlib.util
import os
import shutil
from pathlib import Path
from typing import NoReturn

import pytest

ENV_VAR = "LGENODE_REQUIRE"
COMPONENTS = ("dcmtk", "dicom3tools", "orthanc", "postgres", "chromium", "node", "ghostscript", "keras", "data")


def required() -> set[str]:
    """The components named in ``LGENODE_REQUIRE`` (all of them for ``all``).

    Raises
    ------
    ValueError
        For a name that is not a known component (a typo must not silently require nothing).
    """
    names = {n.strip() for n in os.environ.get(ENV_VAR, "").split(",") if n.strip()}
    if "all" in names:
        return set(COMPONENTS)
    unknown = names - set(COMPONENTS)
    if unknown:
        raise ValueError(f"{ENV_VAR}: unknown component(s) {sorted(unknown)}; known: {', '.join(COMPONENTS)}")
    return names


def strict() -> bool:
    """Whether ``LGENODE_REQUIRE`` is set at all (then every skip fails the session)."""
    return bool(required())


def missing(component: str, reason: str) -> NoReturn:
    """Stop the current test because ``component`` is absent: a skip, or a failure when required."""
    assert component in COMPONENTS, component
    if component in required():
        pytest.fail(f"{reason} ({component} is required by {ENV_VAR})", pytrace=False)
    pytest.skip(reason)


def available(component: str) -> bool:
    """Whether ``component`` is present on this machine."""
    from tests.support.orthanc import orthanc_available

    checks = {
        "dcmtk": lambda: Path("/usr/bin/storescu").is_file() and Path("/usr/bin/storescp").is_file(),
        "dicom3tools": lambda: Path("/usr/bin/dciodvfy").is_file() or shutil.which("dciodvfy") is not None,
        "orthanc": orthanc_available,
        "chromium": lambda: Path("/usr/bin/chromium").exists(),
        "node": lambda: shutil.which("node") is not None and shutil.which("npm") is not None,
        "ghostscript": lambda: shutil.which("gs") is not None,
        "keras": lambda: importlib.util.find_spec("keras") is not None,
        "postgres": lambda: bool(os.environ.get("LGENODE_TEST_PG_URL")) or bool(glob.glob("/usr/lib/postgresql/*/bin/initdb")),
        "data": lambda: (data_root() / "myops2020" / "Case3001_LGE.nii.gz").is_file(),
    }
    return checks[component]()


def data_root() -> Path:
    """Where the research data live (the lab's rule: ``$LGENODE_DATA_DIR`` or ``../shared/data``)."""
    from pipeline.datasets.paths import data_root as _data_root

    return _data_root()


def requires(component: str, reason: str | None = None) -> pytest.MarkDecorator:
    """A mark: the test needs ``component`` (checked at setup, see `tests.conftest`)."""
    return pytest.mark.requires(component, reason or f"{component} not available")
