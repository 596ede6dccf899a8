"""The reliability suite: every test here is marked ``reliability`` and adds to one tally,
printed at the end of the run."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.reliability.tally import TALLY

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in Path(str(item.fspath)).resolve().parents:
            item.add_marker(pytest.mark.reliability)


def pytest_terminal_summary(terminalreporter) -> None:  # type: ignore[no-untyped-def]
    if not TALLY.tried and not TALLY.scenarios:
        return
    terminalreporter.section("reliability tally")
    for line in TALLY.lines():
        terminalreporter.write_line(line)
    TALLY.write(REPO / "test-artifacts" / "reliability-tally.json")
