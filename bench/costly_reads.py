"""What one client hammering a costly read does to everyone else, before and
after the cost limits, in one run.

A bystander participant asks for a cheap page (the results API of a small
workshop on the same server) every 50 ms while one client hammers one costly
route with a few requests in flight:

- ``similar``: a participant looks up similar cards with a new 500-character
  text each time (one sentence embedding each, against 300 cards);
- ``suggestions``: the facilitator asks for proposed clusters of 300 loose cards;
- ``lock+report``: the facilitator toggles a closed workshop's join lock and
  opens its report (each used to re-render its PDF and DOCX);
- ``edit+pdf``: the facilitator downloads the PDF as fast as it comes while a
  participant edits a card twice a second (on both servers alike), so every
  download may be a fresh render.

Each row runs for ``--seconds`` (10 by default; edit+pdf for
``--render-seconds``, 60, as its limit counts renders per minute and one
100-card PDF takes seconds) on a server whose cost limits
are set very high (``before``) and on one with the default limits (``after``);
both servers run at once with the same workshops, and the rows alternate
between them, so a change in the machine's load meanwhile hits both alike.
The limits are per minute: within a row the "after" server first grants its
whole minute's budget (120 look-ups, 12 suggestions, 4 renders), then answers
429. Prints the bystander's p50/p90, the hammer's answers (2xx and
429), the server's and this load generator's CPU, and the ratios. The servers
run pinned to core 0 and this process to core 1 (when there are two); the load
generator is a plain asyncio HTTP/1.1 client, light enough to be far from
saturated (its CPU is printed). Loopback only; every loop is bounded in time.

Run: ``.venv/bin/python bench/costly_reads.py`` (about five minutes)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import psutil  # noqa: E402

from bench._measure import CpuMeter, pct, table  # noqa: E402
from bench._server import Api, AppServer  # noqa: E402

HIGH = "1000000"
# Set-up only: building the workshops through the API must not wait for limits
# that are not what this bench is about. The same on both servers.
SETUP_ENV = {
    "LESSONS_RATE_JOINS_PER_IP_PER_MINUTE": HIGH,
    "LESSONS_RATE_CARDS_PER_MINUTE": HIGH,
}
# The limits under test, raised out of reach: the "before" server.
UNLIMITED = {
    f"LESSONS_RATE_{name}": HIGH
    for name in (
        "SIMILAR_PER_MINUTE",
        "SIMILAR_PER_WORKSHOP_PER_MINUTE",
        "SUGGESTIONS_PER_MINUTE",
        "SUGGESTIONS_PER_WORKSHOP_PER_MINUTE",
        "RENDERS_PER_MINUTE",
        "EXPORTS_PER_MINUTE",
    )
}
WORDS = [
    "police",
    "border",
    "training",
    "prosecutors",
    "trafficking",
    "evidence",
    "partners",
    "mission",
    "field",
    "office",
    "corruption",
    "legislation",
    "financial",
    "investigation",
    "curriculum",
    "assessment",
    "witness",
    "protection",
    "customs",
    "liaison",
    "cybercrime",
    "firearms",
    "laundering",
    "drugs",
    "сотрудничество",
    "граница",
    "полиция",
    "обучение",
]
TOPICS = [
    "Joint investigation teams",
    "Border liaison offices",
    "Witness protection",
    "Asset recovery",
    "Cybercrime training",
    "Firearms marking",
]


def sentence(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n))


# -- a light HTTP/1.1 client -----------------------------------------------------------


class Conn:
    """One keep-alive connection; requests one at a time; reconnects when the
    server has closed it."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def _open(self) -> None:
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            with contextlib.suppress(Exception):
                await self.writer.wait_closed()
        self.reader = self.writer = None

    async def request(
        self, method: str, path: str, headers: dict[str, str], body: bytes = b""
    ) -> tuple[int, bytes]:
        for attempt in (1, 2):
            if self.writer is None:
                await self._open()
            assert self.reader is not None and self.writer is not None
            head = [f"{method} {path} HTTP/1.1", f"Host: 127.0.0.1:{self.port}"]
            head += [f"{k}: {v}" for k, v in headers.items()]
            if body or method in ("POST", "PUT", "PATCH"):
                head.append(f"Content-Length: {len(body)}")
            try:
                self.writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + body)
                await self.writer.drain()
                return await self._response()
            except (asyncio.IncompleteReadError, ConnectionError):
                await self.close()
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    async def _response(self) -> tuple[int, bytes]:
        assert self.reader is not None
        raw = await self.reader.readuntil(b"\r\n\r\n")
        lines = raw.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        fields = {}
        for line in lines[1:]:
            if ":" in line:
                k, _, v = line.partition(":")
                fields[k.strip().lower()] = v.strip().lower()
        if "content-length" in fields:
            data = await self.reader.readexactly(int(fields["content-length"]))
        elif fields.get("transfer-encoding") == "chunked":
            parts = []
            while True:
                size = int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16)
                parts.append(await self.reader.readexactly(size + 2))
                if size == 0:
                    break
            data = b"".join(p[:-2] for p in parts)
        else:
            data = b""
        if fields.get("connection") == "close":
            await self.close()
        return status, data


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


# -- the workshops ---------------------------------------------------------------------


def build(api: Api, rng: random.Random, cards: int) -> dict[str, Any]:
    """A: 300 loose cards in collect (similar, suggestions); B: closed, 20
    cards (lock+report); C: open, 100 cards by one editor (edit+pdf: a PDF of
    a few seconds); D: 5 cards and the bystander, whose own request stays
    cheap (the results of 300 cards are not)."""
    org = api.login()
    out: dict[str, Any] = {"org": org}

    def workshop(title: str, n_cards: int, writers: int) -> dict[str, Any]:
        w = api.create_workshop(org, title, ["Collect"], private_writing=False)
        code, fa = w["code"], w["focus_areas"][0]["id"]
        fac = api.join(code, "Facilitator", facilitator_key=w["facilitator_key"])["token"]
        aff = w["affiliations"][0] if w["affiliations"] else ""
        api.phase(code, fac, fa, "collect")
        people = [api.join(code, f"Writer {i}", aff)["token"] for i in range(writers)]
        ids = []
        for i in range(n_cards):
            topic = TOPICS[i % len(TOPICS)]
            body = f"{topic}: {sentence(rng, rng.randint(8, 30))}."
            card = api.card(code, people[i % writers], fa, f"{topic} {i}", body)
            ids.append(card["id"])
        return {"code": code, "fa": fa, "fac": fac, "people": people, "cards": ids, "aff": aff}

    out["a"] = a = workshop("Costly reads A", cards, 30)
    a["hammer"] = api.join(a["code"], "Hammer", a["aff"])["token"]
    out["b"] = b = workshop("Costly reads B (closed)", 20, 2)
    r = api.http.post(
        f"/organizer/w/{b['code']}/close", data={"confirm_close": "yes"}, headers=bearer(org)
    )
    assert r.status_code in (200, 303), r.text[:300]
    out["c"] = workshop("Costly reads C", 100, 1)
    out["d"] = d = workshop("Costly reads D (the bystander's)", 5, 1)
    d["bystander"] = api.join(d["code"], "Bystander", d["aff"])["token"]
    return out


def warm(api: Api, w: dict[str, Any]) -> None:
    """Load the model, WeasyPrint and the closed workshop's documents first."""
    a, b, c = w["a"], w["b"], w["c"]
    api.call(
        "GET",
        f"/workshops/{a['code']}/similar",
        a["hammer"],
        params={"focus_area_id": a["fa"], "text": "Border liaison offices warm-up"},
    )
    api.call("GET", f"/workshops/{a['code']}/focus-areas/{a['fa']}/suggestions", a["fac"])
    r = api.http.get(f"/w/{b['code']}/report", headers=bearer(b["fac"]))
    assert r.status_code == 200, r.text[:300]
    for fmt in ("pdf", "docx"):  # waits for the report page's preparing, if still going
        r = api.http.get(
            f"/api/v1/workshops/{b['code']}/export",
            params={"format": fmt},
            headers=bearer(b["fac"]),
        )
        assert r.status_code == 200, r.text[:300]
    r = api.http.get(
        f"/api/v1/workshops/{c['code']}/export", params={"format": "pdf"}, headers=bearer(c["fac"])
    )
    assert r.status_code == 200, r.text[:300]


# -- one row ---------------------------------------------------------------------------

Hammer = Callable[[Conn, int], Awaitable[int]]
PACE = 0.5  # seconds between two calls of a row's paced side task


def hammers(
    w: dict[str, Any], rng: random.Random
) -> dict[str, tuple[Hammer | None, Hammer | None]]:
    a, b, c = w["a"], w["b"], w["c"]

    async def similar(conn: Conn, n: int) -> int:
        text = (f"{n} " + sentence(rng, 120))[:500]
        q = urlencode({"focus_area_id": a["fa"], "text": text})
        path = f"/api/v1/workshops/{a['code']}/similar?{q}"
        return (await conn.request("GET", path, bearer(a["hammer"])))[0]

    async def suggestions(conn: Conn, n: int) -> int:
        path = f"/api/v1/workshops/{a['code']}/focus-areas/{a['fa']}/suggestions"
        return (await conn.request("GET", path, bearer(a["fac"])))[0]

    async def lock_report(conn: Conn, n: int) -> int:
        form = {"Content-Type": "application/x-www-form-urlencoded", **bearer(b["fac"])}
        body = f"locked={n % 2}".encode()
        status, _ = await conn.request("POST", f"/w/{b['code']}/lock", form, body)
        if status >= 300:
            return status
        return (await conn.request("GET", f"/w/{b['code']}/report", bearer(b["fac"])))[0]

    async def edit(conn: Conn, n: int) -> int:
        card = c["cards"][n % len(c["cards"])]
        body = f'{{"title": "Edited card {n}"}}'.encode()
        headers = {"Content-Type": "application/json", **bearer(c["people"][0])}
        path = f"/api/v1/workshops/{c['code']}/cards/{card}"
        return (await conn.request("PATCH", path, headers, body))[0]

    async def pdf(conn: Conn, n: int) -> int:
        path = f"/api/v1/workshops/{c['code']}/export?format=pdf"
        return (await conn.request("GET", path, bearer(c["fac"])))[0]

    return {
        "idle": (None, None),
        "similar": (similar, None),
        "suggestions": (suggestions, None),
        "lock+report": (lock_report, None),
        # A card edited twice a second on both servers alike (the edits are
        # writes, not what is measured), the PDF downloaded as fast as it comes.
        "edit+pdf": (pdf, edit),
    }


async def run_row(
    port: int,
    w: dict[str, Any],
    row: tuple[Hammer | None, Hammer | None],
    seconds: float,
    inflight: int,
) -> dict[str, Any]:
    hammer, paced = row
    d = w["d"]
    lat: list[float] = []
    bystander_status: Counter[int] = Counter()
    hammer_status: Counter[int] = Counter()
    end = time.monotonic() + seconds
    counter = iter(range(10**9))

    async def bystander() -> None:
        conn = Conn(port)
        path = f"/api/v1/workshops/{d['code']}/results"
        tick = time.monotonic()
        while time.monotonic() < end:
            t0 = time.perf_counter()
            status, _ = await conn.request("GET", path, bearer(d["bystander"]))
            lat.append(time.perf_counter() - t0)
            bystander_status[status] += 1
            tick += 0.05
            await asyncio.sleep(max(0.0, tick - time.monotonic()))
        await conn.close()

    async def hammering() -> None:
        assert hammer is not None
        conn = Conn(port)
        while time.monotonic() < end:
            try:
                status = await hammer(conn, next(counter))
            except (OSError, asyncio.IncompleteReadError):
                status = 0
            hammer_status[status] += 1
        await conn.close()

    async def pacing() -> None:
        assert paced is not None
        conn = Conn(port)
        tick, n = time.monotonic(), 0
        while time.monotonic() < end:
            paced_status[await paced(conn, n)] += 1
            n += 1
            tick += PACE
            await asyncio.sleep(max(0.0, tick - time.monotonic()))
        await conn.close()

    paced_status: Counter[int] = Counter()
    me = psutil.Process()
    cpu0, t0 = sum(me.cpu_times()[:2]), time.monotonic()
    tasks = [bystander()] + ([hammering() for _ in range(inflight)] if hammer else [])
    tasks += [pacing()] if paced else []
    # A request in flight at the end is waited for, at most a minute more.
    await asyncio.wait_for(asyncio.gather(*tasks), timeout=seconds + 60)
    wall = time.monotonic() - t0
    return {
        "lat": lat,
        "bystander": bystander_status,
        "hammer": hammer_status,
        "paced": paced_status,
        "client_cpu": 100 * (sum(me.cpu_times()[:2]) - cpu0) / wall,
        "wall": wall,
    }


def quiet(pid: int, timeout: float = 90.0) -> None:
    """Wait until the server is idle (renders left in the background finish)."""
    proc = psutil.Process(pid)
    proc.cpu_percent(None)
    deadline = time.monotonic() + timeout
    calm = 0
    while time.monotonic() < deadline and calm < 3:
        time.sleep(0.5)
        calm = calm + 1 if proc.cpu_percent(None) < 5 else 0


# -- main ------------------------------------------------------------------------------


def pin(cores: set[int]) -> None:
    with contextlib.suppress(AttributeError, OSError):
        os.sched_setaffinity(0, cores)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=10.0, help="length of each row")
    ap.add_argument(
        "--render-seconds",
        type=float,
        default=60.0,
        help="length of the edit+pdf row (its limit counts renders per minute)",
    )
    ap.add_argument("--inflight", type=int, default=4, help="the hammer's requests in flight")
    ap.add_argument("--cards", type=int, default=300, help="cards in the big workshop")
    args = ap.parse_args()
    seconds = min(args.seconds, 60.0)
    lengths = {"edit+pdf": min(args.render_seconds, 120.0)}
    two = (os.cpu_count() or 1) >= 2 and hasattr(os, "sched_setaffinity")
    results: dict[str, dict[str, dict[str, Any]]] = {}
    names: list[str] = []
    labels = ("before", "after")
    servers: dict[str, AppServer] = {}
    built: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
        # Both servers up at once and the rows interleaved (before, after, next
        # row...), so a change in the machine's load meanwhile hits both alike.
        for label, env in zip(labels, (UNLIMITED, {}), strict=True):
            if two:
                pin({0})  # the server, started now, inherits core 0
            server = AppServer(Path(tmp) / label, env={**SETUP_ENV, **env})
            server.prepare()
            server.start()
            stack.callback(server.stop)
            if two:
                pin({1})  # and the load generator keeps core 1
            servers[label] = server
            api = Api(server.url, timeout=120)
            t0 = time.monotonic()
            built[label] = build(api, random.Random(7), args.cards)
            warm(api, built[label])
            api.close()
            print(f"[{label}] workshops built and warmed in {time.monotonic() - t0:.0f} s")
            results[label] = {}
        rows = {label: hammers(built[label], random.Random(11)) for label in labels}
        names = list(rows["before"])
        for name in names:
            for label in labels:
                server = servers[label]
                for other in servers.values():
                    quiet(other.pid)
                meter = CpuMeter(server.pid)
                meter.start()
                row = asyncio.run(
                    run_row(
                        server.port,
                        built[label],
                        rows[label][name],
                        lengths.get(name, seconds),
                        args.inflight,
                    )
                )
                meter.stop()
                row["server_cpu"] = meter.percent
                results[label][name] = row
                print(f"[{label}] {name}: {_line(row)}", flush=True)
        for label, server in servers.items():
            if server.errors():
                print(f"[{label}] server log errors: {server.exceptions()}")
    print()
    print(
        f"Bystander GET /results every 50 ms, {seconds:.0f} s per row (edit+pdf "
        f"{lengths['edit+pdf']:.0f} s); hammer: one client, "
        f"{args.inflight} requests in flight; server on core 0, load generator on core 1"
        + ("" if two else " (not pinned: fewer than two cores)")
        + "."
    )
    head = [
        "row",
        "limits",
        "p50 ms",
        "p90 ms",
        "by. n",
        "by. !2xx",
        "hammer 2xx",
        "429",
        "server cpu",
        "client cpu",
    ]
    body = []
    for name in names:
        for label in ("before", "after"):
            r = results[label][name]
            ok = sum(n for s, n in r["hammer"].items() if 200 <= s < 300)
            body.append(
                [
                    name,
                    label,
                    f"{pct(r['lat'], 50) * 1000:.1f}",
                    f"{pct(r['lat'], 90) * 1000:.1f}",
                    len(r["lat"]),
                    sum(n for s, n in r["bystander"].items() if not 200 <= s < 300),
                    ok if r["hammer"] else "-",
                    r["hammer"].get(429, 0) if r["hammer"] else "-",
                    f"{r['server_cpu']:.0f}%",
                    f"{r['client_cpu']:.0f}%",
                ]
            )
    print(table(head, body))
    print()
    head = ["row", "p50 before/after", "p90 before/after", "p50 after/idle", "p90 after/idle"]
    body = []
    idle = results["after"]["idle"]["lat"]
    for name in names[1:]:
        b, a = results["before"][name]["lat"], results["after"][name]["lat"]
        body.append(
            [
                name,
                f"{pct(b, 50) / pct(a, 50):.1f}x",
                f"{pct(b, 90) / pct(a, 90):.1f}x",
                f"{pct(a, 50) / pct(idle, 50):.1f}x",
                f"{pct(a, 90) / pct(idle, 90):.1f}x",
            ]
        )
    print(table(head, body))


def _line(r: dict[str, Any]) -> str:
    hs = dict(sorted(r["hammer"].items()))
    paced = f", paced {dict(r['paced'])}" if r["paced"] else ""
    return (
        f"bystander p50 {pct(r['lat'], 50) * 1000:.1f} ms, p90 {pct(r['lat'], 90) * 1000:.1f} ms "
        f"(n {len(r['lat'])}); hammer {hs or '-'}{paced}; server cpu {r['server_cpu']:.0f}%, "
        f"client cpu {r['client_cpu']:.0f}%"
    )


if __name__ == "__main__":
    main()
