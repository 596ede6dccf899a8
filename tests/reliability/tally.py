"""What the reliability suite tried and what happened: printed at the end of the run (see
conftest.py) and written to test-artifacts/reliability-tally.json. README.md quotes it."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Tally:
    tried: int = 0  # C-STOREs sent
    stored: int = 0  # answered Success and found in the store
    refused: Counter[str] = field(default_factory=Counter)  # status -> count
    crashes: int = 0  # node process died, association aborted, no response, or C-ECHO failed
    losses: int = 0  # acknowledged (Success) but not in the store after the scenario
    wrong_status: int = 0  # answered, but not with the expected status
    scenarios: dict[str, str] = field(default_factory=dict)  # scenario -> "ok" or what failed

    def record(self, expected: int, got: int | None, *, stored: bool | None = None) -> None:
        self.tried += 1
        if got is None:
            self.crashes += 1
            return
        if got == 0x0000:
            if stored is False:
                self.losses += 1
            else:
                self.stored += 1
        else:
            self.refused[f"0x{got:04X}"] += 1
        if got != expected:
            self.wrong_status += 1

    def lines(self) -> list[str]:
        refused = ", ".join(f"{k} {v}" for k, v in sorted(self.refused.items())) or "none"
        out = [f"C-STOREs tried: {self.tried}; stored: {self.stored}; refused by status: {sum(self.refused.values())} "
               f"({refused}); wrong status: {self.wrong_status}; crashes: {self.crashes}; losses: {self.losses}"]
        out += [f"  {name}: {result}" for name, result in sorted(self.scenarios.items())]
        return out

    def write(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"tried": self.tried, "stored": self.stored, "refused": dict(self.refused),
                                    "wrong_status": self.wrong_status, "crashes": self.crashes, "losses": self.losses,
                                    "scenarios": self.scenarios}, indent=2))


TALLY = Tally()
