"""Who made a result: the algorithm and device identity written into SEG, SR and PDF."""

from __future__ import annotations

from dataclasses import dataclass, field

import node

__all__ = ["AlgorithmInfo"]


@dataclass(frozen=True)
class AlgorithmInfo:
    """Identity of the segmentation algorithm (name and version from the model card).

    ``version`` is the model card's version; ``software_version`` is the node's. Both go into
    the SEG's Algorithm Identification and Software Versions, the SR's algorithm identification
    and the derived UIDs (a new model version makes new objects).
    """

    name: str
    version: str
    manufacturer: str = "lgenode project"
    model_name: str = "lgenode LGE AI node"
    software_version: str = node.__version__
    device_serial_number: str = "0"
    source: str | None = None  # e.g. the model card URL
    parameters: dict[str, str] = field(default_factory=dict)

    @property
    def uid_version(self) -> str:
        """What the derived UIDs depend on (model and node version)."""
        return f"{self.name}/{self.version}/{self.software_version}"
