"""Live-board fan-out, measured end to end on the real app.

Starts ``lessons serve`` (one worker; SQLite unless --database-url), opens N real
websocket clients in a separate process (bench/_pool.py's client pool), and drives
real HTTP actions at a fixed rate: card submissions (unique titles) into focus areas
in ``collect`` with private writing off, and dots on cards in a focus area in ``vote``
with blind voting off. It prints, per run: latency from an action's request to its
effect arriving on every socket, the time until every socket holds the server's last
seq, what never arrived, and the server's CPU and memory. A join storm (participants
join over HTTP at once and open their sockets) and a bare ``websockets.broadcast()``
reference server replaying the app's own frames at the same times follow.

Run: ``.venv/bin/python bench/fanout.py`` (about a minute) or ``--full`` (the targets:
2,000 sockets, 50 actions/s for 60 s, a 1,000-participant join storm). Loopback only;
every loop is bounded in count and time."""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import pickle
import subprocess
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
    BODY,
    Api,
    AppServer,
    create_pg_database,
    drop_pg_database,
    make_workshop,
    settled_seq,
)
from tests.support.live_server import free_port  # noqa: E402

LOAD_ENV = {
    "LESSONS_RATE_CARDS_PER_MINUTE": "1000000",
    "LESSONS_RATE_VOTES_PER_MINUTE": "1000000",
    "LESSONS_RATE_JOINS_PER_IP_PER_MINUTE": "1000000",
    "LESSONS_WS_MAX_PER_PARTICIPANT": "1000000",
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--full", action="store_true", help="the targets: 2000 sockets, 50/s, 60 s")
    ap.add_argument("--sockets", type=int, help="websocket clients (default 200; full 2000)")
    ap.add_argument("--rate", type=float, help="actions per second (default 10; full 50)")
    ap.add_argument("--seconds", type=float, help="how long to drive (default 15; full 60)")
    ap.add_argument("--join", type=int, help="join-storm participants (default 200; full 1000)")
    ap.add_argument(
        "--max-inflight",
        type=int,
        default=32,
        help="HTTP actions open at once; above ~40 the app stalls for 30 s (its SQLAlchemy "
        "pool waits while the threadpool is full: see the report)",
    )
    ap.add_argument(
        "--join-concurrency",
        type=int,
        default=0,
        help="join requests in flight at once in the storm (default: all of them)",
    )
    ap.add_argument(
        "--areas",
        type=int,
        help="collect focus areas the cards fill one after another (default 4; full 16): "
        "a push re-renders each changed area whole, so this bounds frame size",
    )
    ap.add_argument("--vote-cards", type=int, default=20, help="cards in the vote area")
    ap.add_argument("--database-url", help="PostgreSQL server: a fresh database is made on it")
    ap.add_argument("--redis-url", help="use the Redis broker")
    ap.add_argument("--settle", type=float, default=30, help="max wait for the last push, s")
    ap.add_argument("--no-reference", action="store_true")
    ap.add_argument("--no-join-storm", action="store_true")
    ap.add_argument("--no-fanout", action="store_true")
    ap.add_argument(
        "--reference-server", nargs=2, metavar=("PORT", "FRAMES"), help=argparse.SUPPRESS
    )
    args = ap.parse_args(argv)
    full = {"sockets": 2000, "rate": 50.0, "seconds": 60.0, "join": 1000, "areas": 16}
    modest = {"sockets": 200, "rate": 10.0, "seconds": 15.0, "join": 200, "areas": 4}
    for name, value in (full if args.full else modest).items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    return args


# -- the app ------------------------------------------------------------------------------


class Server:
    """The app under test with its database (a fresh PostgreSQL one when asked)."""

    def __init__(self, args: argparse.Namespace, work: Path, name: str) -> None:
        self.pg = create_pg_database(args.database_url) if args.database_url else None
        self.app = AppServer(
            work / name, database_url=self.pg, redis_url=args.redis_url, env=LOAD_ENV
        )
        self.args = args

    def __enter__(self) -> AppServer:
        self.app.prepare()
        self.app.start()
        return self.app

    def __exit__(self, *exc: object) -> None:
        self.app.stop()
        if self.pg:
            drop_pg_database(self.pg, self.args.database_url)


async def drive(
    base: str, scene: dict[str, Any], rate: float, seconds: float, max_inflight: int = 32
) -> dict[str, Any]:
    """Cards and votes, alternating, at `rate` per second. A card's title stamps it;
    votes on one card are sent one at a time, so its k-th dot is the k-th vote sent.
    At most `max_inflight` requests are open at once (see --max-inflight)."""
    code, people = scene["code"], scene["people"]
    loop = asyncio.get_running_loop()
    free: asyncio.Queue[int] = asyncio.Queue()
    for card in scene["vote_cards"]:
        free.put_nowait(card)
    dots = Counter[int]()
    spent = Counter[int]()
    voter = 0
    actions: list[dict[str, Any]] = []
    http_lat: dict[str, list[float]] = {"card": [], "vote": []}
    status: Counter[str] = Counter()
    inflight = asyncio.Semaphore(max_inflight)
    t_end = 0.0
    sends: list[float] = []
    per_area = max(1, math.ceil(rate * seconds / 2 / len(scene["collect"])))

    async def card(i: int, client: httpx.AsyncClient) -> None:
        nonlocal t_end
        p = people[i % len(people)]
        # The areas fill one after another, as a facilitator moves through them, so a
        # push usually carries one collect area (and the vote area).
        areas = scene["collect"]
        fa = areas[min(i // 2 // per_area, len(areas) - 1)]
        title = f"bench-c{i:06d}"
        body = {"focus_area_id": fa, "kind": "lesson", "title": title, "body": BODY}
        t = time.time()
        sends.append(t)
        try:
            r = await client.post(
                f"/api/v1/workshops/{code}/cards",
                json=body,
                headers={"Authorization": f"Bearer {p['token']}"},
            )
            status[f"card {r.status_code}"] += 1
        except httpx.HTTPError as exc:
            status[f"card {type(exc).__name__}"] += 1
            return
        t_end = max(t_end, time.time())
        http_lat["card"].append(time.time() - t)
        if r.status_code == 201:
            actions.append({"kind": "card", "title": title, "t": t})

    async def vote(client: httpx.AsyncClient) -> None:
        nonlocal voter, t_end
        card_id = await free.get()
        try:
            for _ in range(len(people)):
                voter = (voter + 1) % len(people)
                if spent[voter] < 50:
                    break
            else:
                status["vote: out of dots"] += 1
                return
            p = people[voter]
            spent[voter] += 1
            t = time.time()
            sends.append(t)
            try:
                r = await client.post(
                    f"/api/v1/workshops/{code}/cards/{card_id}/votes",
                    headers={"Authorization": f"Bearer {p['token']}"},
                )
                status[f"vote {r.status_code}"] += 1
            except httpx.HTTPError as exc:
                status[f"vote {type(exc).__name__}"] += 1
                return
            t_end = max(t_end, time.time())
            http_lat["vote"].append(time.time() - t)
            if r.status_code == 200:
                dots[card_id] += 1
                actions.append({"kind": "vote", "card": card_id, "k": dots[card_id], "t": t})
        finally:
            free.put_nowait(card_id)

    async def one(i: int, client: httpx.AsyncClient) -> None:
        async with inflight:
            if i % 2 == 0 or not scene["vote_cards"]:
                await card(i, client)
            else:
                await vote(client)

    limits = httpx.Limits(max_connections=max_inflight, max_keepalive_connections=max_inflight)
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=60) as client:
        n = int(rate * seconds)
        t0 = loop.time()
        wall0 = time.time()
        tasks = []
        for i in range(n):
            delay = t0 + i / rate - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(i, client)))
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


def frame_counts(result: dict[str, Any]) -> tuple[Counter[int], dict[int, float]]:
    """How many sockets got each distinct frame, and when it first arrived anywhere."""
    seen: Counter[int] = Counter()
    first: dict[int, float] = {}
    for times, kids in zip(result["times"], result["kids"], strict=True):
        for t, kid in zip(times, kids, strict=True):
            if kid not in first or t < first[kid]:
                first[kid] = t
        seen.update(set(kids))
    return seen, first


def fanout_run(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    votes = math.ceil(args.rate * args.seconds / 2)
    people = max(20, math.ceil(votes / 40) + 1)
    with Server(args, work, "fanout") as app:
        api = Api(app.url)
        scene = make_workshop(
            api, collect_areas=args.areas, vote_cards=args.vote_cards, participants=people
        )
        api.close()
        frames_path = work / "frames.pickle"
        pool = Pool(
            {
                "mode": "open",
                "sockets": args.sockets,
                "tokens": [p["token"] for p in scene["people"]],
                "ws_url": f"{app.ws_url}/ws/workshops/{scene['code']}",
                "origin": app.url,
                "expect_ids": scene["board_ids"],
                "keep_frames": str(frames_path),
                "ready_timeout": 120,
            },
            work,
        )
        try:
            ready = pool.wait("ready", 180)
            meter = CpuMeter(app.pid)
            meter.start()
            driven = asyncio.run(drive(app.url, scene, args.rate, args.seconds, args.max_inflight))
            final = settled_seq(app.database_url, scene["code"])
            settled = pool.settle(final, args.settle)
            meter.stop()
            result = pool.finish()
        finally:
            pool.kill()
        errors = app.exceptions()
    got = arrivals(result, driven["actions"])
    settle_times = [t for t in result["t_settled"] if t is not None]
    delivered = sum(
        1 for times in result["times"] for t in times if meter.wall0 <= t <= meter.wall1
    )
    seen, first = frame_counts(result)
    sizes = [result["frames"][k]["size"] for k, c in seen.items() if c >= args.sockets / 2]
    return {
        "args": args,
        "scene": scene,
        "ready": ready,
        "driven": driven,
        "final": final,
        "settled": settled,
        "settle_s": (max(settle_times) - driven["t_end"])
        if settled["count"] >= args.sockets
        else None,
        "got": got,
        "result": result,
        "meter": meter,
        "delivered": delivered,
        "mean_kb": sum(sizes) / len(sizes) / 1024 if sizes else 0,
        "frames_path": frames_path,
        "seen": seen,
        "first": first,
        "errors": errors,
    }


# -- the reference: a bare websockets.broadcast() server ---------------------------------


async def reference_server(port: int, frames_file: str) -> None:
    """Serve sockets; on "go" on stdin, broadcast the scheduled frames at their times."""
    from websockets.asyncio.server import broadcast, serve

    with open(frames_file, "rb") as f:
        plan = pickle.load(f)
    initial: str = plan["initial"]
    schedule: list[tuple[float, str]] = plan["schedule"]
    conns: set[Any] = set()

    async def handler(ws: Any) -> None:
        conns.add(ws)
        try:
            await ws.send(initial)
            async for _ in ws:  # hellos: nothing to do, every push goes to everyone
                pass
        finally:
            conns.discard(ws)

    loop = asyncio.get_running_loop()
    # Compression as uvicorn offers it, and as browsers accept it: permessage-deflate.
    async with serve(
        handler, "127.0.0.1", port, compression="deflate", max_size=None, ping_interval=20
    ):
        print(json.dumps({"event": "listening"}), flush=True)
        await loop.run_in_executor(None, sys.stdin.readline)
        t0 = loop.time()
        sent = []
        for offset, text in schedule:
            delay = t0 + offset - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            sent.append(time.time())
            broadcast(conns, text)
        print(json.dumps({"event": "sent", "times": sent}), flush=True)
        await loop.run_in_executor(None, sys.stdin.readline)


def reference_run(args: argparse.Namespace, work: Path, app_run: dict[str, Any]) -> dict[str, Any]:
    """The app's broadcast frames (those most sockets got), replayed at their times."""
    texts: dict[int, bytes] = {}
    with open(app_run["frames_path"], "rb") as f:
        while True:
            try:
                kid, data = pickle.load(f)
            except EOFError:
                break
            texts[kid] = data
    res = app_run["result"]
    first_kids = Counter(kids[0] for kids in res["kids"] if kids)
    initial = first_kids.most_common(1)[0][0]
    t_start = app_run["driven"]["t_start"]
    pushed = sorted(
        (t, kid)
        for kid, t in app_run["first"].items()
        if app_run["seen"][kid] >= args.sockets / 2 and kid != initial and t >= t_start
    )
    if not pushed:
        raise RuntimeError("the app run delivered no broadcast frames to replay")
    t0 = pushed[0][0]
    plan = {
        "initial": texts[initial].decode(),
        "schedule": [(t - t0, texts[kid].decode()) for t, kid in pushed],
    }
    plan_path = work / "reference-plan.pickle"
    with open(plan_path, "wb") as f:
        pickle.dump(plan, f)
    port = free_port()
    ref = subprocess.Popen(
        [sys.executable, __file__, "--reference-server", str(port), str(plan_path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert ref.stdin is not None and ref.stdout is not None
    try:
        json.loads(ref.stdout.readline())  # listening
        pool = Pool(
            {
                "mode": "open",
                "sockets": args.sockets,
                "ws_url": f"ws://127.0.0.1:{port}/",
                "ready_timeout": 120,
            },
            work,
        )
        try:
            pool.wait("ready", 180)
            meter = CpuMeter(ref.pid)
            meter.start()
            ref.stdin.write("go\n")
            ref.stdin.flush()
            sent = json.loads(ref.stdout.readline())["times"]
            final = max(res["frames"][kid]["seq"] or 0 for _, kid in pushed)
            pool.settle(final, args.settle)
            meter.stop()
            result = pool.finish()
        finally:
            pool.kill()
    finally:
        ref.kill()
        ref.wait(10)
    # Which reference frame is which: the same (seq, size) as the app's.
    index = {
        (res["frames"][kid]["seq"], res["frames"][kid]["size"]): i
        for i, (_, kid) in enumerate(pushed)
    }
    lat = []
    lost = 0
    delivered = 0
    for times, kids in zip(result["times"], result["kids"], strict=True):
        got: dict[int, float] = {}
        for t, kid in zip(times, kids, strict=True):
            info = result["frames"][kid]
            i = index.get((info["seq"], info["size"]))
            if i is not None and i not in got:
                got[i] = t
                delivered += 1
        lat.extend(t - sent[i] for i, t in got.items())
        lost += len(pushed) - len(got)
    return {
        "frames": len(pushed),
        "lat": lat,
        "lost": lost,
        "delivered": delivered,
        "meter": meter,
        "closes": result["closes"],
        "client_cpu": result["cpu"],
    }


# -- the join storm -------------------------------------------------------------------


def join_storm(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    with Server(args, work, "storm") as app:
        api = Api(app.url)
        scene = make_workshop(api, collect_areas=2, vote_cards=10, participants=4, prefill=40)
        api.close()
        meter = CpuMeter(app.pid)
        meter.start()
        pool = Pool(
            {
                "mode": "join",
                "sockets": args.join,
                "http_url": app.url,
                "code": scene["code"],
                "affiliation": scene["affiliation"],
                "ws_url": f"{app.ws_url}/ws/workshops/{scene['code']}",
                "origin": app.url,
                "expect_ids": scene["board_ids"],
                "ready_timeout": 30,
                "max_connects": 5,
                "join_concurrency": args.join_concurrency,
                "open_concurrency": args.join,
            },
            work,
        )
        try:
            ready = pool.wait("ready", 120)
            final = settled_seq(app.database_url, scene["code"])
            pool.settle(final, args.settle)
            meter.stop()
            result = pool.finish()
        finally:
            pool.kill()
        errors = app.exceptions()
    t0 = ready["t_start"]
    full = [t for t in result["t_full"] if t is not None]
    at_final = [t for t in result["t_settled"] if t is not None]
    return {
        "n": args.join,
        "complete": len(full),
        "t_complete": max(full) - t0 if len(full) == args.join else None,
        "t_final": max(at_final) - t0 if len(at_final) == args.join else None,
        "join_lat": result["join_lat"],
        "join_status": result["join_status"],
        "closes": result["closes"],
        "meter": meter,
        "errors": errors,
    }


# -- report -----------------------------------------------------------------------------


def ms(x: float | None) -> str:
    return "-" if x is None or x != x else f"{x * 1000:.0f}"


def s(x: float | None) -> str:
    return "never" if x is None else f"{x:.2f}"


def report(
    args: argparse.Namespace,
    fan: dict[str, Any] | None,
    ref: dict[str, Any] | None,
    storm: dict[str, Any] | None,
) -> None:
    if fan:
        d, got, m = fan["driven"], fan["got"], fan["meter"]
        lat = got["lat"]
        cpu_per_k = 1e6 * m.cpu / max(fan["delivered"], 1)
        cards = sum(1 for a in d["actions"] if a["kind"] == "card")
        print(
            f"\nFan-out: app ({'SQLite' if not args.database_url else 'PostgreSQL'}, "
            f"{'Redis' if args.redis_url else 'memory'} broker, permessage-deflate); "
            f"{cards} cards filling {args.areas} collect areas in turn, "
            f"{len(d['actions']) - cards} dots on {args.vote_cards} cards"
        )
        print(
            table(
                [
                    "sockets",
                    "rate/s",
                    "actions",
                    "p50 ms",
                    "p95 ms",
                    "p99 ms",
                    "max ms",
                    "all final s",
                    "lost sock/pairs",
                    "frames",
                    "frame KB",
                    "CPU %",
                    "CPU us/frame",
                    "RSS MB",
                ],
                [
                    [
                        args.sockets,
                        f"{args.rate:g} ({d['achieved']:.1f})",
                        len(d["actions"]),
                        ms(pct(lat, 50)),
                        ms(pct(lat, 95)),
                        ms(pct(lat, 99)),
                        ms(float(lat.max()) if lat.size else None),
                        s(fan["settle_s"]),
                        f"{got['missing_sockets']}/{got['missing_pairs']}",
                        fan["delivered"],
                        f"{fan['mean_kb']:.1f}",
                        f"{m.percent:.0f}",
                        f"{cpu_per_k:.0f}",
                        f"{m.peak_rss / 2**20:.0f}",
                    ]
                ],
            )
        )
        http = d["http"]
        print(
            f"  HTTP p50/p99 ms: card {ms(pct(http['card'], 50))}/{ms(pct(http['card'], 99))}, "
            f"vote {ms(pct(http['vote'], 50))}/{ms(pct(http['vote'], 99))}; "
            f"statuses {dict(d['status'])}; closes {fan['result']['closes']}, "
            f"reconnects {fan['result']['reconnects']}; client CPU "
            f"{fan['result']['cpu']:.0f} s; server exceptions {fan['errors']}"
        )
    if fan and ref:
        m, rm = fan["meter"], ref["meter"]
        app_k = 1e6 * m.cpu / max(fan["delivered"], 1)
        ref_k = 1e6 * rm.cpu / max(ref["delivered"], 1)
        print(
            f"\nReference: websockets.broadcast() replaying the app's {ref['frames']} pushes "
            "at the same times, same sockets"
        )
        print(
            table(
                [
                    "server",
                    "sockets",
                    "p50 ms",
                    "p95 ms",
                    "p99 ms",
                    "max ms",
                    "lost",
                    "frames",
                    "CPU %",
                    "CPU us/frame",
                    "RSS MB",
                    "ratio",
                ],
                [
                    [
                        "app (action->arrival)",
                        args.sockets,
                        ms(pct(fan["got"]["lat"], 50)),
                        ms(pct(fan["got"]["lat"], 95)),
                        ms(pct(fan["got"]["lat"], 99)),
                        ms(float(fan["got"]["lat"].max()) if fan["got"]["lat"].size else None),
                        fan["got"]["missing_pairs"],
                        fan["delivered"],
                        f"{m.percent:.0f}",
                        f"{app_k:.0f}",
                        f"{m.peak_rss / 2**20:.0f}",
                        f"{app_k / ref_k:.1f}x",
                    ],
                    [
                        "reference (send->arrival)",
                        args.sockets,
                        ms(pct(ref["lat"], 50)),
                        ms(pct(ref["lat"], 95)),
                        ms(pct(ref["lat"], 99)),
                        ms(max(ref["lat"]) if ref["lat"] else None),
                        ref["lost"],
                        ref["delivered"],
                        f"{rm.percent:.0f}",
                        f"{ref_k:.0f}",
                        f"{rm.peak_rss / 2**20:.0f}",
                        "1.0x",
                    ],
                ],
            )
        )
    if storm:
        m = storm["meter"]
        lat = storm["join_lat"]
        at_once = args.join_concurrency or "all"
        print(
            f"\nJoin storm: {storm['n']} participants join ({at_once} requests at once), "
            "then open their sockets"
        )
        print(
            table(
                [
                    "joins",
                    "complete boards",
                    "all complete s",
                    "all at final seq s",
                    "join p50 ms",
                    "join p99 ms",
                    "join max ms",
                    "CPU %",
                    "RSS MB",
                ],
                [
                    [
                        storm["n"],
                        storm["complete"],
                        s(storm["t_complete"]),
                        s(storm["t_final"]),
                        ms(pct(lat, 50)),
                        ms(pct(lat, 99)),
                        ms(max(lat) if lat else None),
                        f"{m.percent:.0f}",
                        f"{m.peak_rss / 2**20:.0f}",
                    ]
                ],
            )
        )
        print(
            f"  statuses {storm['join_status']}; closes {storm['closes']}; "
            f"server exceptions {storm['errors']}"
        )


def main() -> None:
    args = parse_args()
    if args.reference_server:
        port, frames = args.reference_server
        try:
            import uvloop

            uvloop.run(reference_server(int(port), frames))
        except ImportError:
            asyncio.run(reference_server(int(port), frames))
        return
    load = os.getloadavg()[0]
    print(f"{os.cpu_count()} cores, load average {load:.2f} before the run", flush=True)
    with tempfile.TemporaryDirectory(prefix="bench-fanout-") as tmp:
        work = Path(tmp)
        fan = ref = storm = None
        if not args.no_fanout:
            print(
                f"fan-out: {args.sockets} sockets, {args.rate:g} actions/s, {args.seconds:g} s",
                flush=True,
            )
            fan = fanout_run(args, work)
            if not args.no_reference:
                print("reference server ...", flush=True)
                ref = reference_run(args, work, fan)
        if not args.no_join_storm:
            print(f"join storm: {args.join} participants ...", flush=True)
            storm = join_storm(args, work)
        report(args, fan, ref, storm)


if __name__ == "__main__":
    main()
