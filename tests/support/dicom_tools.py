"""DICOM validation with dicom3tools' dciodvfy.

dciodvfy's exit status is not a verdict (it is 0 with errors too): the verdict is the absence
of lines starting with "Error".
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from pydicom.dataset import Dataset

from tests.support.require import requires

DCIODVFY = "/usr/bin/dciodvfy"

needs_dciodvfy = requires("dicom3tools", "dciodvfy (Debian dicom3tools) not installed")


def dciodvfy_lines(path: Path | str) -> list[str]:
    exe = DCIODVFY if Path(DCIODVFY).is_file() else shutil.which("dciodvfy")
    assert exe, "dciodvfy not installed"
    r = subprocess.run([exe, str(path)], capture_output=True, text=True, timeout=120)
    return (r.stdout + r.stderr).splitlines()


def dciodvfy_errors(ds_or_path: Dataset | Path | str, tmp_dir: Path | None = None) -> list[str]:
    """The "Error" lines dciodvfy prints for a file or an in-memory dataset."""
    if isinstance(ds_or_path, Dataset):
        assert tmp_dir is not None
        path = tmp_dir / f"{ds_or_path.SOPInstanceUID}.dcm"
        ds_or_path.save_as(path, enforce_file_format=True)
    else:
        path = Path(ds_or_path)
    return [line for line in dciodvfy_lines(path) if line.startswith("Error")]
