"""Rate limits shared through Redis: several workers (limiter instances, or whole
apps) on one Redis spend one budget, deployments do not share, the memory
storage still works alone, and a dead Redis neither fails nor stalls a request.
Tests that need the shared Redis skip without it unless REQUIRE_REDIS=1."""

from __future__ import annotations

import logging
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from fastapi.testclient import TestClient

from app.config import Settings
from app.domain.errors import RateLimited
from app.main import create_app
from app.web.ratelimit import RateLimiter
from tests.conftest import SECRET

# The Redis fixtures are imported so that pytest finds them here (hence the noqa
# on the parameters that name them).
from tests.realtime.conftest import RedisServer, redis_server, redis_url  # noqa: F401

from .conftest import make_settings

LOGGER = "app.web.ratelimit"
KEY_SECRET = b"one deployment's key secret, 32b"


def _delete_keys(url: str, prefix: str) -> None:
    client = redis.Redis.from_url(url, socket_connect_timeout=1)
    try:
        keys = list(client.scan_iter(match=f"{prefix}:*"))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


def _keys(url: str, prefix: str) -> list[bytes]:
    client = redis.Redis.from_url(url, socket_connect_timeout=1)
    try:
        return list(client.scan_iter(match=f"{prefix}:*"))
    finally:
        client.close()


@pytest.fixture
def namespace(redis_url: str) -> Iterator[str]:  # noqa: F811
    """A prefix of its own, so repeated or parallel runs never share a budget."""
    prefix = f"test:ratelimit:{uuid.uuid4().hex}"
    yield prefix
    _delete_keys(redis_url, prefix)


def _refused(limiter: RateLimiter, key: str, limit: int, window: float = 60.0) -> int:
    with pytest.raises(RateLimited) as refused:
        limiter.hit(key, limit=limit, window=window)
    return refused.value.retry_after


def test_two_workers_on_one_redis_share_one_budget(
    redis_url: str,  # noqa: F811
    namespace: str,
) -> None:
    a = RateLimiter(redis_url, prefix=namespace, key_secret=KEY_SECRET)
    b = RateLimiter(redis_url, prefix=namespace, key_secret=KEY_SECRET)
    for _ in range(3):
        a.hit("badjoin:203.0.113.5", limit=5)
    for _ in range(2):
        b.hit("badjoin:203.0.113.5", limit=5)
    assert 1 <= _refused(a, "badjoin:203.0.113.5", 5) <= 60
    assert 1 <= _refused(b, "badjoin:203.0.113.5", 5) <= 60
    # Another key has its own budget, and the windows live under the namespace,
    # named by the key's kind and a keyed hash: no IP address sits in Redis.
    b.hit("badjoin:203.0.113.6", limit=5)
    stored = _keys(redis_url, namespace)
    assert len(stored) == 2 and all(b"badjoin:" in k for k in stored)
    assert not any(b"203.0.113" in k for k in stored)


def test_deployments_on_one_redis_do_not_share_budgets(
    redis_url: str,  # noqa: F811
    namespace: str,
) -> None:
    here = RateLimiter(redis_url, prefix=f"{namespace}:here", key_secret=KEY_SECRET)
    there = RateLimiter(redis_url, prefix=f"{namespace}:there", key_secret=KEY_SECRET)
    for _ in range(2):
        here.hit("votes:1", limit=2)
    for _ in range(2):
        there.hit("votes:1", limit=2)  # participant 1 of another deployment
    _refused(here, "votes:1", 2)
    _refused(there, "votes:1", 2)


def test_the_namespace_comes_from_the_deployment_secret(tmp_path: Path) -> None:
    def prefix(secret: str) -> str:
        settings = Settings(secret_key=secret, data_dir=tmp_path, redis_url="redis://127.0.0.1:1/0")
        return RateLimiter.from_settings(settings).prefix

    one, other = SECRET, "another-deployment-" + "y" * 40
    assert prefix(one) == prefix(one)
    assert prefix(one) != prefix(other)
    assert prefix(one).startswith("lessons:ratelimit:")
    assert one not in prefix(one) and one[:12] not in prefix(one)


def test_memory_storage_limits_each_key_on_its_own() -> None:
    limiter = RateLimiter()
    assert not limiter.shared
    for _ in range(3):
        limiter.hit("cards:1", limit=3)
    retry = _refused(limiter, "cards:1", 3)
    assert 1 <= retry <= 60
    for _ in range(3):
        limiter.hit("cards:2", limit=3)
    with pytest.raises(RateLimited, match="Slow down"):
        limiter.hit("cards:1", limit=3, message="Slow down.")


def test_a_short_window_rounds_up_to_whole_seconds_and_then_frees_up() -> None:
    limiter = RateLimiter("memory://")
    limiter.hit("k", limit=1, window=0.5)
    assert _refused(limiter, "k", 1, window=0.5) == 1
    time.sleep(1.1)
    limiter.hit("k", limit=1, window=0.5)


def test_an_unreachable_redis_falls_back_to_counting_in_process(
    caplog: pytest.LogCaptureFixture,
) -> None:
    limiter = RateLimiter("redis://127.0.0.1:1/0")  # nothing listens on port 1
    caplog.set_level(logging.WARNING, logger=LOGGER)
    for _ in range(4):
        t0 = time.monotonic()
        limiter.hit("join:203.0.113.5", limit=4)
        assert time.monotonic() - t0 < 1.0
    assert 1 <= _refused(limiter, "join:203.0.113.5", 4) <= 60
    limiter.hit("join:203.0.113.6", limit=4)
    warnings = [r for r in caplog.records if r.name == LOGGER]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]
    assert "unreachable" in warnings[0].getMessage()


def test_a_redis_that_never_answers_does_not_stall_requests() -> None:
    # A socket that accepts connections (the kernel's backlog) but never replies:
    # what a hung Redis or a black-holed route looks like.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(64)
        port = silent.getsockname()[1]
        limiter = RateLimiter(f"redis://127.0.0.1:{port}/0")
        t0 = time.monotonic()
        limiter.hit("cards:1", limit=20)
        assert time.monotonic() - t0 < 1.5, "the first call waits one short timeout at most"
        t0 = time.monotonic()
        for _ in range(19):
            limiter.hit("cards:1", limit=20)
        _refused(limiter, "cards:1", 20)
        assert time.monotonic() - t0 < 0.5, "later calls do not wait for Redis at all"


def test_limits_are_shared_again_once_redis_is_back(
    redis_server: RedisServer,  # noqa: F811
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger=LOGGER)
    a = RateLimiter(
        redis_server.url, prefix="test:ratelimit", retry_interval=0.2, key_secret=KEY_SECRET
    )
    b = RateLimiter(
        redis_server.url, prefix="test:ratelimit", retry_interval=0.2, key_secret=KEY_SECRET
    )
    a.hit("cards:1", limit=3)
    redis_server.kill()
    for _ in range(3):  # a fresh in-process window
        a.hit("cards:1", limit=3)
    _refused(a, "cards:1", 3)
    redis_server.start()  # empty: the budgets start again
    time.sleep(0.3)
    for _ in range(2):
        a.hit("cards:2", limit=3)
    b.hit("cards:2", limit=3)
    _refused(b, "cards:2", 3)
    _refused(a, "cards:2", 3)
    messages = [r.getMessage() for r in caplog.records if r.name == LOGGER]
    assert len(messages) == 2 and "unreachable" in messages[0], messages
    assert "again" in messages[1]


def test_failed_joins_on_one_app_are_refused_on_another(
    redis_url: str,  # noqa: F811
    database_url: str,
    tmp_path: Path,
) -> None:
    # Two app processes of one deployment (same secret, database and Redis). A
    # secret of its own gives this test a namespace of its own.
    secret = f"shared-limits-{uuid.uuid4().hex}-" + "z" * 20
    settings = make_settings(
        database_url,
        tmp_path,
        redis_url=redis_url,
        secret_key=secret,
        rate_failed_joins_per_ip_per_minute=5,
    )
    app_a, app_b = create_app(settings), create_app(settings)
    prefix = app_a.state.limiter.prefix
    assert prefix == app_b.state.limiter.prefix
    try:
        with TestClient(app_a) as a, TestClient(app_b) as b:
            for client, tries in ((a, 3), (b, 2)):
                for i in range(tries):
                    r = client.get("/join", params={"code": f"WRONG{i:03d}"})
                    assert r.status_code == 404, r.status_code
            for client in (b, a):
                r = client.get("/join", params={"code": "WRONG999"})
                assert r.status_code == 429, r.text[:200]
                assert 1 <= int(r.headers["retry-after"]) <= 60
            # Another address still gets its own budget.
            elsewhere = TestClient(app_b, client=("198.51.100.4", 5000))
            assert elsewhere.get("/join", params={"code": "WRONG000"}).status_code == 404
        assert not any(b"198.51.100.4" in k or b"testclient" in k for k in _keys(redis_url, prefix))
    finally:
        _delete_keys(redis_url, prefix)
