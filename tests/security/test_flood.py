"""A flood against a real server (loopback only, bounded loops, default
settings): 500 scripted joins from one address and 100 cards a second from
ten participants for about five seconds, while one legitimate participant
keeps writing and reading. The limits answer 429, the legitimate participant
is served throughout, and the server stays up. Prints the figures."""

from __future__ import annotations

import asyncio
import statistics
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from .live import ORGANIZER, PASSWORD, TEMPLATE, LiveServer

JOINS = 500
CARD_RATE = 100  # per second, across the writers
SECONDS = 5.0
WRITERS = 10


@pytest.fixture
def flood_server(tmp_path: Path) -> Iterator[LiveServer]:
    server = LiveServer(tmp_path / "flood")
    server.prepare()
    server.start()
    yield server
    server.stop()


class Tally:
    def __init__(self) -> None:
        self.statuses: Counter[int] = Counter()
        self.latencies: list[float] = []

    async def call(self, client: httpx.AsyncClient, method: str, url: str, **kw: Any) -> int:
        start = time.perf_counter()
        try:
            r = await client.request(method, url, **kw)
            status = r.status_code
        except httpx.HTTPError:
            status = 0  # refused or timed out: counted, never retried
        self.latencies.append(time.perf_counter() - start)
        self.statuses[status] += 1
        return status

    def figures(self) -> str:
        ms = sorted(x * 1000 for x in self.latencies) or [0.0]
        p99 = ms[min(len(ms) - 1, int(len(ms) * 0.99))]
        ok = sum(n for s, n in self.statuses.items() if 200 <= s < 300)
        return (
            f"requests {len(self.latencies)}, 2xx {ok}, 429 {self.statuses[429]}, "
            f"other {sum(self.statuses.values()) - ok - self.statuses[429]}, "
            f"p50 {statistics.median(ms):.0f} ms, p99 {p99:.0f} ms"
        )


async def _flood(url: str) -> tuple[Tally, Tally, list[int]]:
    limits = httpx.Limits(max_connections=60, max_keepalive_connections=60)
    async with httpx.AsyncClient(base_url=url, timeout=30, limits=limits, trust_env=False) as http:
        r = await http.post("/api/v1/login", json={"name": ORGANIZER, "password": PASSWORD})
        org = {"Authorization": f"Bearer {r.json()['token']}"}
        r = await http.post(
            "/api/v1/workshops",
            json={"title": "Flood", "template": TEMPLATE, "settings": {"private_writing": False}},
            headers=org,
        )
        created = r.json()
        code, fa = created["code"], created["focus_areas"][0]["id"]
        api = f"/api/v1/workshops/{code}"
        key = created["facilitator_url"].split("key=")[1]
        r = await http.post(
            f"{api}/participants", json={"display_name": "Facilitator", "facilitator_key": key}
        )
        fac = {"Authorization": f"Bearer {r.json()['token']}"}
        await http.put(f"{api}/focus-areas/{fa}/phase", json={"phase": "collect"}, headers=fac)

        async def join(name: str) -> dict[str, str]:
            r = await http.post(
                f"{api}/participants", json={"display_name": name, "affiliation": "ODIHR"}
            )
            assert r.status_code == 201, r.text
            return {"Authorization": f"Bearer {r.json()['token']}"}

        legit = await join("Legitimate participant")
        writers = [await join(f"Writer {i}") for i in range(WRITERS)]

        flood, fair = Tally(), Tally()
        fair_statuses: list[int] = []
        start = time.perf_counter()

        async def joins() -> None:
            # One script with ten connections, each waiting for its answer.
            sem = asyncio.Semaphore(10)

            async def one(i: int) -> None:
                async with sem:
                    body = {"display_name": f"Bot {i}", "affiliation": "ODIHR"}
                    await flood.call(http, "POST", f"{api}/participants", json=body)

            await asyncio.gather(*(one(i) for i in range(JOINS)))

        async def cards(writer: int) -> None:
            # Each writer tries CARD_RATE / WRITERS cards a second, one at a time.
            every = WRITERS / CARD_RATE
            for n in range(int(SECONDS * CARD_RATE / WRITERS)):
                await asyncio.sleep(max(0.0, start + n * every - time.perf_counter()))
                if time.perf_counter() - start > SECONDS:
                    return
                card = {"focus_area_id": fa, "kind": "tool", "title": f"Spam {writer}.{n}"}
                await flood.call(http, "POST", f"{api}/cards", json=card, headers=writers[writer])

        async def legitimate() -> None:
            n = 0
            while time.perf_counter() - start < SECONDS:
                card = {"focus_area_id": fa, "kind": "lesson", "title": f"A real lesson {n}"}
                s1 = await fair.call(http, "POST", f"{api}/cards", json=card, headers=legit)
                s2 = await fair.call(http, "GET", f"{api}/cards", headers=legit)
                fair_statuses.extend([s1, s2])
                n += 1
                await asyncio.sleep(0.5)

        await asyncio.gather(joins(), legitimate(), *(cards(w) for w in range(WRITERS)))
        return flood, fair, fair_statuses


def test_a_flood_is_throttled_and_the_server_keeps_serving(flood_server: LiveServer) -> None:
    started = time.perf_counter()
    flood, fair, fair_statuses = asyncio.run(_flood(flood_server.url))
    took = time.perf_counter() - started
    print(f"\nflood ({took:.1f} s): {flood.figures()}")  # noqa: T201 - the figures are the point
    print(f"legitimate participant: {fair.figures()}")  # noqa: T201
    assert flood.statuses[429] > 0, flood.statuses
    # Joins: the first 300 in the minute pass (the default), the rest wait.
    assert 250 <= sum(n for s, n in flood.statuses.items() if 200 <= s < 300) <= 300 + 300
    assert set(flood.statuses) <= {200, 201, 429}, flood.statuses
    assert fair_statuses and set(fair_statuses) <= {200, 201}, fair_statuses
    assert flood_server.alive()
    assert "Traceback" not in flood_server.log_text()
