"""Helpers for tests that talk DICOM with DCMTK peers: small MR instances (with a patient name
that must never reach a log or audit file), DCMTK command runs, a DCMTK storescp as the PACS."""

from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path

from pydicom import dcmread
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid

from tests.conftest import dcmtk_env, which_dcmtk

PATIENT = "Doe^Secret"


def mr_files(folder: Path, n: int) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    src = dcmread(get_testdata_file("MR_small.dcm"))
    study, series = generate_uid(), generate_uid()
    out = []
    for i in range(n):
        ds = src.copy()
        ds.PatientName = PATIENT
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        ds.InstanceNumber = i + 1
        p = folder / f"{i}.dcm"
        ds.save_as(p, enforce_file_format=True)
        out.append(p)
    return out


def dcmtk(name: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([which_dcmtk(name), *args], capture_output=True, text=True, env=dcmtk_env(), timeout=timeout)


def storescp(port: int, out: Path, *tls: str) -> subprocess.Popen[str]:
    out.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen([which_dcmtk("storescp"), *tls, "-aet", "PACS", "-od", str(out), str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=dcmtk_env())
    deadline = time.time() + 10
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise AssertionError("storescp did not start")
