"""The shipped weights (``models/weights``) as tests use them: the folder, and one network's folder.

From v0.3 the folder is an ensemble (``model.json`` → ``members``, one sub-folder per fold model);
tests that need a single network (quantising it, perturbing it into a second member) take the first.
"""

from __future__ import annotations

import json
from pathlib import Path

SHIPPED = Path(__file__).resolve().parents[1] / "models" / "weights"


def shipped_member() -> Path:
    """Folder holding one shipped network (segmenter/localiser .onnx + model.json)."""
    members = json.loads((SHIPPED / "model.json").read_text()).get("members") or []
    return SHIPPED / members[0] if members else SHIPPED
