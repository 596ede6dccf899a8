"""Failed-authentication throttle: a client address that presents too many invalid credentials
within a window is refused (429) for a while, whatever it presents then.

Why: API keys and tokens are long, but an API reachable from a hospital network should still not
let one host try credentials without limit (OWASP ASVS 2.2.1). Only *presented and invalid*
credentials count — a request without any (a viewer before its login) does not — and a valid one
clears the address's count. State is per process and in memory: a restart forgets it, which is
acceptable for a throttle (the audit trail keeps every refusal).
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable

from node.security.settings import LockoutConfig

# The table of addresses is bounded: beyond this many, the least recently seen are forgotten
# (a flood of spoofed sources must not grow memory without bound).
MAX_ADDRESSES = 10_000


class FailureLimiter:
    """Counts invalid credentials per client address; ``locked(address)`` says for how many more
    seconds an address is refused (0: not locked)."""

    def __init__(self, cfg: LockoutConfig, clock: Callable[[], float] = time.monotonic) -> None:
        self.cfg = cfg
        self.clock = clock
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()
        self._until: dict[str, float] = {}
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        return self.cfg.max_failures > 0

    def locked(self, address: str | None) -> float:
        if not self.enabled or address is None:
            return 0.0
        with self._lock:
            until = self._until.get(address)
            if until is None:
                return 0.0
            left = until - self.clock()
            if left <= 0:
                del self._until[address]
                return 0.0
            return left

    def failure(self, address: str | None) -> bool:
        """Record one invalid credential; True when this failure locks the address."""
        if not self.enabled or address is None:
            return False
        now = self.clock()
        with self._lock:
            times = self._failures.pop(address, None) or deque()
            times.append(now)
            while times and times[0] <= now - self.cfg.window_seconds:
                times.popleft()
            if len(times) >= self.cfg.max_failures:
                self._until[address] = now + self.cfg.lockout_seconds
                return True
            self._failures[address] = times  # most recently seen last
            while len(self._failures) > MAX_ADDRESSES:
                self._failures.popitem(last=False)
            return False

    def success(self, address: str | None) -> None:
        if address is not None:
            with self._lock:
                self._failures.pop(address, None)
