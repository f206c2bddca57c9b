"""Rate limits: a moving window per key, built on the `limits` library. With
REDIS_URL set the windows live in Redis under one namespace per deployment, so
every worker and host spends the same budget; without it they live in process
memory. This module owns the mapping from ``hit(key, limit=, window=)`` to a
`limits` item, that namespace, and what happens when Redis goes away: as with
the realtime broker, losing Redis must not take HTTP down, so the limiter counts
in process memory (one warning), lets one request at a time try Redis again
every few seconds, and shares the budget again as soon as Redis answers."""

from __future__ import annotations

import hashlib
import hmac
import logging
import math
import secrets
import threading
import time
from collections.abc import Callable

import redis
from limits import RateLimitItem, RateLimitItemPerSecond
from limits.storage import MemoryStorage, RedisStorage
from limits.strategies import MovingWindowRateLimiter
from redis.backoff import NoBackoff
from redis.retry import Retry

from app.config import Settings
from app.domain.errors import RateLimited

log = logging.getLogger(__name__)

# Spends (or only tests) one hit of a key's window: None if allowed, else when
# a hit frees up.
_Spend = Callable[[MovingWindowRateLimiter, RateLimitItem, str], float | None]


class RateLimiter:
    """``hit`` counts one attempt and raises ``RateLimited`` once over the limit.

    `timeout` bounds connecting to Redis and each reply (one retry on a fresh
    connection, as a pooled one may be stale after a Redis restart); after a
    failure Redis is tried again at most every `retry_interval` seconds.
    """

    def __init__(
        self,
        storage_url: str | None = None,
        *,
        prefix: str = "lessons:ratelimit",
        key_secret: bytes = b"",
        timeout: float = 0.25,
        retry_interval: float = 5.0,
    ) -> None:
        self.prefix = prefix
        self._key_secret = key_secret or secrets.token_bytes(32)
        self.retry_interval = retry_interval
        self.up = True  # flips only on transitions, so each is logged once
        self._memory = MovingWindowRateLimiter(MemoryStorage())
        self._redis: MovingWindowRateLimiter | None = None
        if storage_url and not storage_url.startswith("memory://"):
            pool = redis.ConnectionPool.from_url(
                storage_url,
                socket_timeout=timeout,
                socket_connect_timeout=timeout,
                retry=Retry(NoBackoff(), 1),
            )
            storage = RedisStorage(storage_url, connection_pool=pool, key_prefix=prefix)
            self._redis = MovingWindowRateLimiter(storage)
        self.shared = self._redis is not None
        self._retry_at = 0.0
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Settings) -> RateLimiter:
        secret = settings.resolved_secret().encode()
        return cls(
            settings.redis_url or None,
            prefix=f"lessons:ratelimit:{settings.deployment_tag()}",
            key_secret=hmac.new(secret, b"ratelimit-keys", hashlib.sha256).digest(),
        )

    def stored_key(self, key: str) -> str:
        """What is stored for ``key``: its kind, then a keyed hash of the rest,
        so no IP address or login name sits in Redis (or in a dump of it)."""
        kind, _, who = key.partition(":")
        digest = hmac.new(self._key_secret, who.encode(), hashlib.sha256).hexdigest()[:32]
        return f"{kind}:{digest}"

    def hit(self, key: str, *, limit: int, window: float = 60.0, message: str = "") -> None:
        """Count one attempt; raise ``RateLimited`` when over ``limit``, with
        ``message`` if given (``{retry}`` in it becomes the seconds to wait)."""
        self._apply(_take, key, limit=limit, window=window, message=message)

    def check(self, key: str, *, limit: int, window: float = 60.0, message: str = "") -> None:
        """Raise ``RateLimited`` if ``key`` has used up ``limit`` in the window
        already; count nothing (for limits on failures, checked before trying)."""
        self._apply(_full, key, limit=limit, window=window, message=message)

    def _apply(self, spend: _Spend, key: str, *, limit: int, window: float, message: str) -> None:
        if window <= 0:
            raise ValueError("window must be positive")
        item = RateLimitItemPerSecond(limit, math.ceil(window))
        key = self.stored_key(key)
        shared = self._redis_if_due()
        reset: float | None = None
        if shared is not None:
            try:
                reset = spend(shared, item, key)
            except redis.RedisError as exc:
                self._mark_down(exc)
                shared = None
            else:
                self._mark_up()
        if shared is None:
            reset = spend(self._memory, item, key)
        if reset is not None:
            retry = max(1, math.ceil(reset - time.time()))
            text = message.replace("{retry}", str(retry)) if message else ""
            raise RateLimited(
                text or f"Too many requests; try again in {retry} s.", retry_after=retry
            )

    def _redis_if_due(self) -> MovingWindowRateLimiter | None:
        if self._redis is None or self.up:
            return self._redis
        with self._lock:
            now = time.monotonic()
            if now < self._retry_at:
                return None
            # This caller probes Redis; the others keep counting in memory meanwhile.
            self._retry_at = now + self.retry_interval
            return self._redis

    def _mark_down(self, exc: Exception) -> None:
        with self._lock:
            self._retry_at = time.monotonic() + self.retry_interval
            was_up, self.up = self.up, False
        if was_up:
            log.warning(
                "rate limits: Redis unreachable (%s); counting per process until it answers",
                exc,
            )

    def _mark_up(self) -> None:
        if self.up:
            return
        with self._lock:
            was_down, self.up = not self.up, True
        if was_down:
            log.warning("rate limits: Redis answers again; limits are shared again")


def _take(limiter: MovingWindowRateLimiter, item: RateLimitItem, key: str) -> float | None:
    """Spend one hit of `key`'s window: None if allowed, else when a hit frees up."""
    if limiter.hit(item, key):
        return None
    return limiter.get_window_stats(item, key).reset_time


def _full(limiter: MovingWindowRateLimiter, item: RateLimitItem, key: str) -> float | None:
    """Like ``_take`` without spending: None if a hit would be allowed."""
    if limiter.test(item, key):
        return None
    return limiter.get_window_stats(item, key).reset_time
