"""The OHIF plugin's own test entry point (ohif-plugin/run-tests.sh) run from pytest.

Unit tests: vitest on the plugin's own SEG decode (frames not byte-aligned: 63x61, 482x478, vs
highdicom), the Save guard, SR parsing and SEG-version logic, with fixtures made by the node's
encoders (needs Node >= 20 and npm; npm ci on first run). End to end
(``ohif-plugin/test/e2e/run_e2e.py``): Orthanc + the real node in-process (segments MyoPS LGE
series at 482x478 and 191x187, re-measures the saved edit, records the review decisions) + the
prebuilt OHIF 3.13.2 viewer + headless Chromium; the viewer's labelmap is compared with pydicom's
decode on every frame. Slow (80-200 s); needs the Debian packages chromium, orthanc,
orthanc-dicomweb, the MyoPS data and model weights (``LGENODE_TEST_WEIGHTS``, else the node's
default weights); skipped with the reason when one is missing. Screenshots and the checks'
results: ``test-artifacts/ohif/``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.require import available, missing, requires

PLUGIN = Path(__file__).resolve().parents[2] / "ohif-plugin"
SCRIPT = PLUGIN / "run-tests.sh"
SKIPPED = 77  # run_e2e.py: MyoPS data, weights, Orthanc or Chromium absent

pytestmark = requires("node", "Node.js and npm are needed")


def _run(*args: str, timeout: int) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "LGENODE_PYTHON": sys.executable}
    return subprocess.run(["bash", str(SCRIPT), *args], cwd=PLUGIN, env=env, capture_output=True,
                          text=True, timeout=timeout)


def test_plugin_unit_tests() -> None:
    r = _run("--unit-only", timeout=600)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-4000:]


@pytest.mark.slow
@pytest.mark.orthanc
@pytest.mark.timeout(1200)  # ~80 s on an idle machine, several minutes on a busy one
def test_plugin_end_to_end() -> None:
    for component in ("chromium", "orthanc"):
        if not available(component):
            missing(component, f"{component} not installed")
    r = _run("--e2e-only", timeout=1100)
    if r.returncode == SKIPPED:
        reason = next((line for line in r.stderr.splitlines() if "SKIPPED" in line), "prerequisites missing")
        missing("data", reason.split("SKIPPED:", 1)[-1].strip())
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-4000:]
