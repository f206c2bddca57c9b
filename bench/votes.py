"""A vote storm on the real app: N sockets watch one focus area in ``vote`` while many
participants add dots at M votes/s for S seconds (blind voting off, or on and
revealed first with --blind). Prints the time until every board shows the final
totals (the totals in the frames equal the database's), vote latency over HTTP and
from request to every board, and how many requests got 429 (the app's own vote rate
limit stays as configured).

Run: ``.venv/bin/python bench/votes.py`` (about 30 s) or ``--full`` (2,000 sockets,
50 votes/s for 60 s). Loopback only; every loop is bounded in count and time."""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import random
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx  # noqa: E402

from bench._frames import arrivals  # noqa: E402
from bench._measure import CpuMeter, pct, table  # noqa: E402
from bench._pool import Pool  # noqa: E402
from bench._server import (  # noqa: E402
    Api,
    AppServer,
    create_pg_database,
    db_query,
    drop_pg_database,
    make_workshop,
    settled_seq,
)

# Joins and sockets per person are raised for the set-up; votes keep the app's limit.
ENV = {
    "LESSONS_RATE_JOINS_PER_IP_PER_MINUTE": "1000000",
    "LESSONS_RATE_CARDS_PER_MINUTE": "1000000",
    "LESSONS_WS_MAX_PER_PARTICIPANT": "1000000",
}


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--full", action="store_true", help="2000 sockets, 50 votes/s, 60 s")
    ap.add_argument("--sockets", type=int, help="websocket clients (default 200; full 2000)")
    ap.add_argument("--rate", type=float, help="votes per second (default 20; full 50)")
    ap.add_argument("--seconds", type=float, help="storm length (default 20; full 60)")
    ap.add_argument("--cards", type=int, default=30, help="cards in the focus area")
    ap.add_argument(
        "--max-inflight",
        type=int,
        default=32,
        help="votes open at once; above ~40 the app stalls (see bench/fanout.py)",
    )
    ap.add_argument("--participants", type=int, help="voters (default: about 25 dots each)")
    ap.add_argument("--blind", action="store_true", help="blind voting on, revealed first")
    ap.add_argument("--database-url", help="PostgreSQL server: a fresh database is made on it")
    ap.add_argument("--redis-url", help="use the Redis broker")
    ap.add_argument("--settle", type=float, default=30, help="max wait for the last push, s")
    args = ap.parse_args()
    defaults = (
        {"sockets": 2000, "rate": 50.0, "seconds": 60.0}
        if args.full
        else {"sockets": 200, "rate": 20.0, "seconds": 20.0}
    )
    for name, value in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    if args.participants is None:
        args.participants = max(50, math.ceil(args.rate * args.seconds / 25))
    return args


async def storm(
    base: str, scene: dict[str, Any], rate: float, seconds: float, max_inflight: int
) -> dict[str, Any]:
    """Votes at `rate`/s from random participants with dots left. Votes on one card go
    one at a time, so the k-th dot a card shows is the k-th vote sent to it."""
    code, people = scene["code"], scene["people"]
    free: asyncio.Queue[int] = asyncio.Queue()
    for card in random.sample(scene["vote_cards"], len(scene["vote_cards"])):
        free.put_nowait(card)
    dots: Counter[int] = Counter()
    left = {i: 50 for i in range(len(people))}
    actions: list[dict[str, Any]] = []
    http_lat: list[float] = []
    status: Counter[str] = Counter()
    t_end = 0.0
    sends: list[float] = []
    inflight = asyncio.Semaphore(max_inflight)

    async def vote(client: httpx.AsyncClient) -> None:
        async with inflight:
            await one_vote(client)

    async def one_vote(client: httpx.AsyncClient) -> None:
        nonlocal t_end
        card_id = await free.get()
        try:
            if not left:
                status["out of dots"] += 1
                return
            who = random.choice(list(left))
            left[who] -= 1
            if not left[who]:
                del left[who]
            t = time.time()
            sends.append(t)
            try:
                r = await client.post(
                    f"/api/v1/workshops/{code}/cards/{card_id}/votes",
                    headers={"Authorization": f"Bearer {people[who]['token']}"},
                )
            except httpx.HTTPError as exc:
                status[type(exc).__name__] += 1
                return
            t_end = max(t_end, time.time())
            http_lat.append(time.time() - t)
            status[str(r.status_code)] += 1
            if r.status_code == 200:
                dots[card_id] += 1
                actions.append({"kind": "vote", "card": card_id, "k": dots[card_id], "t": t})
        finally:
            free.put_nowait(card_id)

    loop = asyncio.get_running_loop()
    limits = httpx.Limits(max_connections=200, max_keepalive_connections=200)
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=60) as client:
        n = int(rate * seconds)
        t0, wall0 = loop.time(), time.time()
        tasks = []
        for i in range(n):
            delay = t0 + i / rate - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(vote(client)))
        # Bounded: what the server has not answered a minute after the last send is
        # counted as unfinished, not waited for.
        _, pending = await asyncio.wait(tasks, timeout=60)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        if pending:
            status["unfinished"] = len(pending)
    return {
        "actions": sorted(actions, key=lambda a: a["t"]),
        "http": http_lat,
        "status": status,
        "t_start": wall0,
        "t_end": t_end,
        "achieved": len(sends) / max(max(sends) - wall0, 1e-9) if sends else 0.0,
        "sent": n,
    }


def totals_reached(result: dict[str, Any], fa_id: int, final: dict[int, int]) -> list[float | None]:
    """Per socket: when the totals on its board first equalled the database's."""
    out: list[float | None] = []
    for times, kids in zip(result["times"], result["kids"], strict=True):
        when = None
        for t, kid in zip(times, kids, strict=True):
            cards = result["frames"][kid]["areas"].get(fa_id)
            if cards is None:
                continue
            shown = {cid: dots or 0 for cid, (_, dots) in cards.items()}
            if all(shown.get(c, 0) == final.get(c, 0) for c in shown.keys() | final.keys()):
                when = t
                break
        out.append(when)
    return out


def main() -> None:
    args = parse_args()
    load = os.getloadavg()[0]
    print(f"{os.cpu_count()} cores, load average {load:.2f} before the run", flush=True)
    with tempfile.TemporaryDirectory(prefix="bench-votes-") as tmp:
        work = Path(tmp)
        pg = create_pg_database(args.database_url) if args.database_url else None
        app = AppServer(work / "app", database_url=pg, redis_url=args.redis_url, env=ENV)
        try:
            app.prepare()
            app.start()
            api = Api(app.url)
            scene = make_workshop(
                api,
                collect_areas=0,
                vote_cards=args.cards,
                participants=args.participants,
                blind_voting=args.blind,
            )
            if args.blind:
                api.reveal(scene["code"], scene["fac"]["token"], scene["vote_fa"])
            api.close()
            print(
                f"vote storm: {args.sockets} sockets, {args.rate:g} votes/s for "
                f"{args.seconds:g} s from {args.participants} participants on {args.cards} cards",
                flush=True,
            )
            pool = Pool(
                {
                    "mode": "open",
                    "sockets": args.sockets,
                    "tokens": [p["token"] for p in scene["people"]],
                    "ws_url": f"{app.ws_url}/ws/workshops/{scene['code']}",
                    "origin": app.url,
                    "expect_ids": scene["board_ids"],
                    "ready_timeout": 120,
                },
                work,
            )
            try:
                pool.wait("ready", 180)
                meter = CpuMeter(app.pid)
                meter.start()
                driven = asyncio.run(
                    storm(app.url, scene, args.rate, args.seconds, args.max_inflight)
                )
                final_seq = settled_seq(app.database_url, scene["code"])
                pool.settle(final_seq, args.settle)
                meter.stop()
                result = pool.finish()
            finally:
                pool.kill()
            rows = db_query(
                app.database_url,
                "SELECT card_id, SUM(dots) FROM vote WHERE focus_area_id = :fa GROUP BY card_id",
                fa=scene["vote_fa"],
            )
            errors = app.exceptions()
        finally:
            app.stop()
            if pg:
                drop_pg_database(pg, args.database_url)
    final = {int(c): int(d) for c, d in rows}
    reached = totals_reached(result, scene["vote_fa"], final)
    done = [t for t in reached if t is not None]
    got = arrivals(result, driven["actions"])
    lat = got["lat"]
    status = driven["status"]
    print(
        f"\nVote storm ({'PostgreSQL' if args.database_url else 'SQLite'}, "
        f"{'Redis' if args.redis_url else 'memory'} broker, "
        f"{'blind voting, revealed' if args.blind else 'blind voting off'})"
    )
    print(
        table(
            ["sockets", "votes/s", "votes ok", "429s", "HTTP p50 ms", "HTTP p99 ms",
             "board p50 ms", "board p99 ms", "board max ms", "final totals on all s",
             "boards short", "CPU %", "RSS MB"],
            [[
                args.sockets,
                f"{args.rate:g} ({driven['achieved']:.1f})",
                status.get("200", 0),
                status.get("429", 0),
                f"{pct(driven['http'], 50) * 1000:.0f}",
                f"{pct(driven['http'], 99) * 1000:.0f}",
                f"{pct(lat, 50) * 1000:.0f}",
                f"{pct(lat, 99) * 1000:.0f}",
                f"{float(lat.max()) * 1000:.0f}" if lat.size else "-",
                f"{max(done) - driven['t_end']:.2f}" if len(done) == len(reached) else "never",
                len(reached) - len(done),
                f"{meter.percent:.0f}",
                f"{meter.peak_rss / 2**20:.0f}",
            ]],
        )
    )  # fmt: skip
    print(
        f"  DB dots {sum(final.values())} on {len(final)} cards; statuses {dict(status)}; "
        f"closes {result['closes']}, reconnects {result['reconnects']}; "
        f"sockets missing a vote {got['missing_sockets']}; server exceptions {errors}"
    )


if __name__ == "__main__":
    main()
