"""Fixtures for the realtime tests: harness servers (real uvicorn subprocesses running
tests/realtime/hubapp.py), Redis availability, throwaway redis-server processes, and
small websocket client helpers built on the real `websockets` library."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from tests.support.live_server import KEEPALIVE, ROOT, free_port, stop_process

REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
_ids = itertools.count(1000)


def wait_until(check: Any, timeout: float, interval: float = 0.02) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(interval)


class Harness:
    """One uvicorn process serving the harness app on a free port."""

    def __init__(self, state: Path, *, wait: bool = True, **env: str) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.ws_base = f"ws://127.0.0.1:{self.port}"
        full_env = {**os.environ, "HUB_STATE": str(state), **env}
        cmd = [sys.executable, "-m", "uvicorn", "tests.realtime.hubapp:app"]
        cmd += ["--host", "127.0.0.1", "--port", str(self.port), "--log-level", "warning"]
        self.proc = subprocess.Popen(cmd, cwd=ROOT, env=full_env)
        self.http = httpx.Client(base_url=self.base, timeout=5, limits=KEEPALIVE)
        if wait:
            self.wait()

    def wait(self) -> None:
        wait_until(self._ready, 15, 0.05)

    def _ready(self) -> bool:
        if self.proc.poll() is not None:
            raise RuntimeError(f"harness exited with {self.proc.returncode}")
        try:
            return self.http.get("/stats").status_code == 200
        except httpx.TransportError:
            return False

    def stats(self) -> dict[str, Any]:
        return self.http.get("/stats").json()

    def bump(self, workshop_id: int, count: int = 1) -> int:
        return int(self.http.post(f"/bump/{workshop_id}", params={"count": count}).json()["seq"])

    def pad(self, workshop_id: int, size: int) -> None:
        self.http.post(f"/pad/{workshop_id}", params={"size": size}).raise_for_status()

    def url(self, workshop_id: int, audience: str = "board", **query: Any) -> str:
        qs = "&".join(f"{k}={v}" for k, v in query.items())
        return f"{self.ws_base}/ws/{workshop_id}/{audience}" + (f"?{qs}" if qs else "")

    def close(self) -> None:
        self.http.close()
        stop_process(self.proc, 5)


@pytest.fixture
def workshop_id() -> int:
    return next(_ids)


@pytest.fixture(scope="session")
def memory_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Harness]:
    state = tmp_path_factory.mktemp("hub") / "state.db"
    server = Harness(state, HUB_REDIS_URL="", HUB_SEND_TIMEOUT="1", HUB_QUEUE_SIZE="8")
    yield server
    server.close()


@pytest.fixture
def fast_server(tmp_path: Path) -> Iterator[Harness]:
    """A harness with a short coalesce window, to push many frames quickly."""
    server = Harness(
        tmp_path / "state.db",
        HUB_REDIS_URL="",
        HUB_COALESCE_MS="10",
        HUB_SEND_TIMEOUT="1",
        HUB_QUEUE_SIZE="8",
    )
    yield server
    server.close()


@pytest.fixture(scope="session")
def redis_url() -> str:
    """The shared Redis; tests skip without it unless REQUIRE_REDIS=1 makes them fail."""
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1)
    try:
        client.ping()
    except redis.RedisError as exc:
        if os.environ.get("REQUIRE_REDIS") == "1":
            pytest.fail(f"REQUIRE_REDIS=1 but Redis at {REDIS_URL} is unreachable: {exc}")
        pytest.skip(f"Redis at {REDIS_URL} is unreachable: {exc}")
    finally:
        client.close()
    return REDIS_URL


class RedisServer:
    """A private redis-server on a free port that a test may kill and restart."""

    def __init__(self) -> None:
        exe = shutil.which("redis-server")
        if exe is None:
            if os.environ.get("REQUIRE_REDIS") == "1":
                pytest.fail("REQUIRE_REDIS=1 but redis-server is not installed")
            pytest.skip("redis-server is not installed")
        self.exe = exe
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen[bytes] | None = None
        self.start()

    def start(self) -> None:
        cmd = [self.exe, "--port", str(self.port), "--bind", "127.0.0.1"]
        cmd += ["--save", "", "--appendonly", "no"]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL)
        client = redis.Redis.from_url(self.url, socket_connect_timeout=0.5)

        def up() -> bool:
            try:
                return bool(client.ping())
            except redis.RedisError:
                return False

        wait_until(up, 10, 0.02)
        client.close()

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(5)
            self.proc = None


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer()
    yield server
    server.kill()


# -- websocket client helpers -----------------------------------------------------------


def frame_seq(text: str) -> int:
    marker = 'data-seq="'
    start = text.index(marker) + len(marker)
    return int(text[start : text.index('"', start)])


async def hello(ws: ClientConnection, seq: int | None) -> None:
    await ws.send(json.dumps({"type": "hello", "seq": seq}))


async def recv(ws: ClientConnection, timeout: float = 2.0) -> str:
    async with asyncio.timeout(timeout):
        data = await ws.recv()
    assert isinstance(data, str)
    return data


async def recv_all(ws: ClientConnection, quiet: float) -> list[str]:
    """Frames that arrive until `quiet` seconds pass without one."""
    frames = []
    while True:
        try:
            frames.append(await recv(ws, quiet))
        except TimeoutError:
            return frames


async def open_ws(url: str) -> ClientConnection:
    return await connect(url, open_timeout=5, max_size=None)


async def close_code(ws: ClientConnection, timeout: float = 3.0) -> int | None:
    """Read until the server closes the socket; return the close code it sent."""
    try:
        async with asyncio.timeout(timeout):
            while True:
                await ws.recv()
    except ConnectionClosed as exc:
        return exc.rcvd.code if exc.rcvd else None
