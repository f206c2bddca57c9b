"""A small sliding-window rate limiter, per process. Enough for one venue
laptop; with several workers each enforces its own share (documented)."""

from __future__ import annotations

import math
import threading
import time
from collections import deque

from app.domain.errors import RateLimited


class RateLimiter:
    def __init__(self) -> None:
        self._hits: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def hit(self, key: str, *, limit: int, window: float = 60.0, message: str = "") -> None:
        """Count one attempt; raise ``RateLimited`` when over ``limit``."""
        now = time.monotonic()
        with self._lock:
            q = self._hits.setdefault(key, deque())
            while q and q[0] <= now - window:
                q.popleft()
            if len(q) >= limit:
                retry = max(1, math.ceil(q[0] + window - now))
                raise RateLimited(
                    message or f"Too many requests; try again in {retry} s.", retry_after=retry
                )
            q.append(now)
            if len(self._hits) > 50_000:
                self._gc(now, window)

    def _gc(self, now: float, window: float) -> None:
        for k in [k for k, q in self._hits.items() if not q or q[-1] <= now - window]:
            del self._hits[k]
