"""The OHIF plugin's own test entry point (ohif-plugin/run-tests.sh) run from pytest.

Unit tests: vitest on the plugin's SR parsing and SEG-version logic, with fixtures made by the
node's encoders (needs Node >= 20 and npm; npm ci on first run). End to end: Orthanc + the
prebuilt OHIF 3.13.2 viewer + headless Chromium (slow, needs the Debian packages chromium,
orthanc, orthanc-dicomweb; about 50 s).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

PLUGIN = Path(__file__).resolve().parents[2] / "ohif-plugin"
SCRIPT = PLUGIN / "run-tests.sh"

pytestmark = pytest.mark.skipif(
    shutil.which("node") is None or shutil.which("npm") is None, reason="Node.js and npm are needed"
)


def _run(*args: str, timeout: int) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "LGENODE_PYTHON": sys.executable}
    return subprocess.run(["bash", str(SCRIPT), *args], cwd=PLUGIN, env=env, capture_output=True,
                          text=True, timeout=timeout)


def test_plugin_unit_tests() -> None:
    r = _run("--unit-only", timeout=600)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-4000:]


@pytest.mark.slow
@pytest.mark.orthanc
def test_plugin_end_to_end() -> None:
    missing = [p for p in ("/usr/bin/chromium", "/usr/sbin/Orthanc") if not Path(p).exists()]
    if missing:
        pytest.skip(f"not installed: {', '.join(missing)}")
    r = _run("--e2e-only", timeout=900)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-4000:]
