"""Login attempt limits per account and per client address, in the memory of the process."""

from __future__ import annotations

import threading
import time
from collections import defaultdict, deque


class LoginRateLimiter:
    """Sliding-window counter of failed logins.

    NOTE: the counts live in one process; with several server processes each keeps its own,
    so the effective limit is multiplied by the number of processes.
    """

    def __init__(
        self, per_account: int = 5, per_address: int = 20, window_seconds: float = 900.0
    ) -> None:
        self.per_account = per_account
        self.per_address = per_address
        self.window = window_seconds
        self._failures: dict[str, deque[float]] = defaultdict(deque)
        self._lock = threading.Lock()

    def _recent(self, key: str, now: float) -> deque[float]:
        times = self._failures[key]
        while times and now - times[0] > self.window:
            times.popleft()
        return times

    def retry_after(self, username: str, address: str) -> float:
        """Seconds until another attempt is allowed, or 0 when it is allowed now."""
        now = time.monotonic()
        with self._lock:
            waits = []
            for key, limit in ((f"user:{username.lower()}", self.per_account),
                               (f"addr:{address}", self.per_address)):
                times = self._recent(key, now)
                if len(times) >= limit:
                    waits.append(self.window - (now - times[0]))
            return max(waits, default=0.0)

    def record_failure(self, username: str, address: str) -> None:
        now = time.monotonic()
        with self._lock:
            self._failures[f"user:{username.lower()}"].append(now)
            self._failures[f"addr:{address}"].append(now)

    def record_success(self, username: str) -> None:
        with self._lock:
            self._failures.pop(f"user:{username.lower()}", None)
