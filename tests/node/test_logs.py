"""D6: the JSON log is one object per line, whatever writes to it (warnings, tracebacks, threads)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from tests.conftest import REPO

SCRIPT = r"""
import logging, threading, warnings
from node.logs import setup_logging
setup_logging("INFO", "json")
from pydicom.dataset import Dataset
ds = Dataset()
ds.PatientBirthDate = "19xx0704"   # pydicom warns (UserWarning), quoting the value
warnings.warn("second\nline", UserWarning)
try:
    1 / 0
except ZeroDivisionError:
    logging.getLogger("node.test").exception("failed")
t = threading.Thread(target=lambda: 1 / 0, name="boom")
t.start(); t.join()
raise RuntimeError("uncaught in main")
"""


def test_warnings_and_tracebacks_are_one_json_object_per_line() -> None:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    r = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, env=env, cwd=REPO, timeout=60)
    assert r.returncode == 1
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    records = [json.loads(line) for line in lines]  # each line parses on its own
    by_msg = {rec["msg"].split(" ")[0]: rec for rec in records}
    assert any(rec["logger"] == "py.warnings" and rec["category"] == "UserWarning" for rec in records)
    assert "19xx0704" not in r.stderr  # the warning's quoted value (patient data) is left out
    assert "ZeroDivisionError" in by_msg["failed"]["exc"]
    threaded = next(rec for rec in records if rec["msg"] == "uncaught exception in a thread")
    assert threaded["thread_name"] == "boom" and "ZeroDivisionError" in threaded["exc"]
    assert any(rec["msg"] == "uncaught exception" and "uncaught in main" in rec["exc"] for rec in records)
