"""Where the shared data lives.

Order: an explicit path, else ``$LGENODE_DATA_DIR``, else ``../shared/data`` relative to the
repository root (the layout of the development machines).
"""

from __future__ import annotations

import os
from pathlib import Path

ENV_VAR = "LGENODE_DATA_DIR"
REPO_ROOT = Path(__file__).resolve().parents[2]


def data_root(explicit: str | os.PathLike[str] | None = None) -> Path:
    """Root of the shared data (the folder holding ``emidec/`` and ``myops2020/``)."""
    if explicit:
        return Path(explicit).expanduser()
    env = os.environ.get(ENV_VAR)
    if env:
        return Path(env).expanduser()
    return (REPO_ROOT / ".." / "shared" / "data").resolve()


def emidec_dir(root: str | os.PathLike[str] | None = None) -> Path:
    """EMIDEC folder: accepts the data root or the ``emidec`` folder itself."""
    return _subdir(data_root(root), "emidec", marker="images")


def myops_dir(root: str | os.PathLike[str] | None = None) -> Path:
    """MyoPS folder: accepts the data root or the ``myops2020`` folder itself."""
    return _subdir(data_root(root), "myops2020", marker=None)


def _subdir(root: Path, name: str, marker: str | None) -> Path:
    # Accept both `--data-dir shared/data` and `--data-dir shared/data/emidec` (held-back cases
    # may be handed over as a bare data-set folder).
    if (root / name).is_dir():
        return root / name
    if marker is not None and (root / marker).is_dir():
        return root
    if marker is None and any(root.glob("*_gd.nii*")):
        return root
    return root / name
