"""Failed logins slow down, per name and per address, before any password hash is computed (each costs an
Argon2 hash of CPU): the first few failures are free, then each waits twice as long as the one before.

    throttle = LoginThrottle()
    throttle.wait_s("name:bob")       # 0.0: may try now; else the seconds until the next try
    throttle.failed("name:bob")       # after a wrong password
    throttle.succeeded("name:bob")    # a right one forgets the failures
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

FREE_FAILURES = 5  # failures in a row that cost nothing
FIRST_DELAY_S = 1.0  # the wait after them, doubled by each further failure
MAX_DELAY_S = 900.0
FORGET_S = 3600.0  # failures older than this (since the last one) are forgotten
KEPT = 10_000  # keys remembered at most (the oldest are dropped first)


def delay_s(failures: int) -> float:
    """How long to wait after `failures` failures in a row."""
    if failures < FREE_FAILURES:
        return 0.0
    return min(MAX_DELAY_S, FIRST_DELAY_S * 2.0 ** (failures - FREE_FAILURES))


class LoginThrottle:
    """Counts failed logins per key ("name:…", "address:…"); thread-safe."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._failures: dict[str, tuple[int, float]] = {}  # key -> (failures in a row, time of the last)
        self._lock = threading.Lock()

    def wait_s(self, key: str) -> float:
        with self._lock:
            failures, last = self._failures.get(key, (0, 0.0))
            return max(0.0, last + delay_s(failures) - self.clock()) if failures else 0.0

    def failed(self, key: str) -> None:
        with self._lock:
            now = self.clock()
            failures, last = self._failures.pop(key, (0, now))
            self._failures[key] = (1 if now - last > FORGET_S else failures + 1, now)
            while len(self._failures) > KEPT:
                self._failures.pop(next(iter(self._failures)))

    def succeeded(self, key: str) -> None:
        with self._lock:
            self._failures.pop(key, None)
