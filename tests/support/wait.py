"""Polling helper for tests that wait on a real process or server."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_for(fn: Callable[[], T], timeout: float, what: str, interval: float = 0.5) -> T:
    """Call ``fn`` until it returns something truthy (returned), or fail after ``timeout`` seconds."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        got = fn()
        if got:
            return got
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what}")
