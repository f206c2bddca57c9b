"""What the load generators and the live-app tests share: the real app
(``lessons db upgrade`` + ``lessons serve``) in a subprocess on a free port,
a small JSON API client, throwaway PostgreSQL databases, and helpers that read
websocket frames (the ``data-seq`` of ``#ws-status`` and the top-level
``hx-swap-oob`` fragments a frame carries)."""

from __future__ import annotations

import contextlib
import os
import pickle
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx

ROOT = Path(__file__).resolve().parents[1]
# New per run: the rate-limit budgets in a shared Redis are per deployment secret.
SECRET = "bench-secret-" + secrets.token_hex(24)
ORGANIZER = "organizer"
PASSWORD = "bench organizer password, long enough"
PG_URL = os.environ.get("TEST_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def bin_path(name: str) -> str:
    here = Path(sys.executable).parent / name
    return str(here) if here.exists() else name


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class AppServer:
    """``lessons serve`` (one worker) on a port of its own, with its own data
    directory; SQLite unless a database URL is given. It can be stopped
    (SIGTERM) and started again on the same port and data."""

    def __init__(
        self,
        data_dir: Path,
        *,
        port: int | None = None,
        database_url: str | None = None,
        redis_url: str | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        self.data_dir = Path(data_dir)
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.ws_url = f"ws://127.0.0.1:{self.port}"
        self.log_path = self.data_dir / f"server-{self.port}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        base = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith("LESSONS_") and k not in ("DATABASE_URL", "REDIS_URL")
        }
        base.update(
            LESSONS_DATA_DIR=str(self.data_dir),
            LESSONS_PUBLIC_URL=self.url,
            SECRET_KEY=SECRET,
            LESSONS_LOG_LEVEL="warning",
            PYTHONUNBUFFERED="1",
        )
        if database_url:
            base["DATABASE_URL"] = database_url
        if redis_url:
            base["REDIS_URL"] = redis_url
        base.update(env or {})
        self.env = base
        self.database_url = database_url or f"sqlite:///{self.data_dir / 'lessons.db'}"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def prepare(self, *, organizer: bool = True) -> None:
        """Migrate the database and add the organizer (password on stdin)."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        run: dict[str, Any] = {"env": self.env, "cwd": ROOT, "capture_output": True}
        done = subprocess.run([bin_path("lessons"), "db", "upgrade"], timeout=120, **run)
        if done.returncode != 0:
            raise RuntimeError(f"lessons db upgrade failed:\n{done.stderr.decode()[-2000:]}")
        if organizer:
            done = subprocess.run(
                [bin_path("lessons"), "organizer", "add", ORGANIZER],
                input=PASSWORD.encode(),
                timeout=60,
                **run,
            )
            if done.returncode != 0:
                raise RuntimeError(f"organizer add failed:\n{done.stderr.decode()[-2000:]}")

    def start(self, timeout: float = 30) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [bin_path("lessons"), "serve", "--host", "127.0.0.1", "--port", str(self.port)],
            env=self.env,
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the server exited at start-up:\n{self.log_tail()}")
            try:
                if httpx.get(self.url + "/login", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"the server did not answer within {timeout} s:\n{self.log_tail()}")

    def stop(self, timeout: float = 15) -> None:
        """SIGTERM, as a service manager would; SIGKILL if it hangs."""
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, n: int = 60) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return "(no log)"

    def errors(self) -> list[str]:
        """Tracebacks and ERROR lines from the server log."""
        if not self.log_path.exists():
            return []
        text = self.log_path.read_text(errors="replace")
        return [ln for ln in text.splitlines() if "Traceback" in ln or ln.startswith("ERROR")]

    def exceptions(self) -> dict[str, int]:
        """The exceptions in the server log's tracebacks, counted (first 100 characters)."""
        if not self.log_path.exists():
            return {}
        found = re.findall(
            r"^([A-Za-z_][\w.]*(?:Error|Exception|Timeout)\b[^\n]{0,80})",
            self.log_path.read_text(errors="replace"),
            re.M,
        )
        return dict(Counter(found).most_common(3))


class ApiError(Exception):
    def __init__(self, response: httpx.Response) -> None:
        super().__init__(
            f"{response.request.method} {response.request.url.path}: "
            f"{response.status_code} {response.text[:300]}"
        )
        self.response = response


class Api:
    """The JSON API v1, synchronous; every call raises ApiError on 4xx/5xx."""

    def __init__(self, base: str, timeout: float = 30) -> None:
        self.base = base
        self.http = httpx.Client(base_url=base, timeout=timeout)

    def call(self, method: str, path: str, token: str | None = None, **kw: Any) -> Any:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        r = self.http.request(method, "/api/v1" + path, headers=headers, **kw)
        if r.status_code >= 400:
            raise ApiError(r)
        return r.json() if r.content else None

    def login(self) -> str:
        return str(
            self.call("POST", "/login", json={"name": ORGANIZER, "password": PASSWORD})["token"]
        )

    def create_workshop(
        self, token: str, title: str, areas: list[str], **settings: Any
    ) -> dict[str, Any]:
        body = {
            "title": title,
            "focus_areas": [{"title": a} for a in areas],
            "settings": settings,
        }
        created: dict[str, Any] = self.call("POST", "/workshops", token, json=body)
        created["facilitator_key"] = link_key(created["facilitator_url"])
        created["projector_key"] = link_key(created["projector_url"])
        created["affiliations"] = self.call("GET", f"/workshops/{created['code']}")["affiliations"]
        return created

    def join(
        self, code: str, name: str, affiliation: str = "", facilitator_key: str | None = None
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"display_name": name, "affiliation": affiliation}
        if facilitator_key:
            body["facilitator_key"] = facilitator_key
        joined: dict[str, Any] = self.call("POST", f"/workshops/{code}/participants", json=body)
        return joined

    def card(
        self,
        code: str,
        token: str,
        fa_id: int,
        title: str,
        body: str = "",
        client_id: str | None = None,
        kind: str = "lesson",
    ) -> dict[str, Any]:
        data = {"focus_area_id": fa_id, "kind": kind, "title": title, "body": body}
        if client_id:
            data["client_id"] = client_id
        card: dict[str, Any] = self.call("POST", f"/workshops/{code}/cards", token, json=data)
        return card

    def phase(self, code: str, token: str, fa_id: int, phase: str) -> Any:
        return self.call(
            "PUT", f"/workshops/{code}/focus-areas/{fa_id}/phase", token, json={"phase": phase}
        )

    def vote(self, code: str, token: str, card_id: int) -> Any:
        return self.call("POST", f"/workshops/{code}/cards/{card_id}/votes", token)

    def reveal(self, code: str, token: str, fa_id: int) -> Any:
        return self.call("POST", f"/workshops/{code}/focus-areas/{fa_id}/reveal", token)

    def close(self) -> None:
        self.http.close()


def link_key(url: str) -> str:
    return parse_qs(urlsplit(url).query)["key"][0]


BODY = (
    "What worked: joint training of police and prosecutors, with a shared case file "
    "and a mentor on each side."
)


def make_workshop(
    api: Api,
    *,
    collect_areas: int,
    vote_cards: int,
    participants: int,
    prefill: int = 0,
    **settings: Any,
) -> dict[str, Any]:
    """A workshop for load tests: `collect_areas` focus areas in `collect`, then (with
    vote_cards) one in `vote` holding that many cards; private writing and blind voting
    off, 50 dots per person. Returns the API's answer plus the people and ids."""
    token = api.login()
    titles = [f"Collect {i + 1}" for i in range(collect_areas)]
    titles += ["Vote"] if vote_cards else []
    options = {
        "private_writing": False,
        "blind_voting": False,
        "vote_budget": 50,
        "vote_cap": 50,
        **settings,
    }
    w = api.create_workshop(token, "Load test", titles, **options)
    code = w["code"]
    fac = api.join(code, "Facilitator", facilitator_key=w["facilitator_key"])
    aff = w["affiliations"][0] if w["affiliations"] else ""
    people = [api.join(code, f"Participant {i}", aff) for i in range(participants)]
    ids = [fa["id"] for fa in w["focus_areas"]]
    collect, vote_fa = ids[:collect_areas], (ids[collect_areas] if vote_cards else None)
    for fa in collect:
        api.phase(code, fac["token"], fa, "collect")
    for i in range(prefill):
        p = people[i % len(people)]
        api.card(code, p["token"], collect[i % len(collect)], f"prefill {i}", BODY)
    card_ids: list[int] = []
    if vote_fa is not None:
        api.phase(code, fac["token"], vote_fa, "collect")
        for i in range(vote_cards):
            p = people[i % len(people)]
            card_ids.append(api.card(code, p["token"], vote_fa, f"vote card {i}", BODY)["id"])
        api.phase(code, fac["token"], vote_fa, "vote")
    return {
        **w,
        "fac": fac,
        "people": people,
        "affiliation": aff,
        "fa_ids": ids,
        "collect": collect,
        "vote_fa": vote_fa,
        "vote_cards": card_ids,
        "board_ids": [f"fa-board-{i}" for i in ids],
    }


# -- databases ------------------------------------------------------------------------


def postgres_ok(url: str = PG_URL) -> bool:
    from sqlalchemy import create_engine

    try:
        eng = create_engine(url, connect_args={"connect_timeout": 2})
        with eng.connect():
            pass
        eng.dispose()
        return True
    except Exception:
        return False


def redis_ok(url: str = REDIS_URL) -> bool:
    import redis

    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=1).ping())
    except Exception:
        return False


def create_pg_database(base_url: str = PG_URL) -> str:
    """A new, empty PostgreSQL database next to base_url's; returns its URL."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    base = make_url(base_url)
    name = f"b_{uuid.uuid4().hex[:12]}"
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return base.set(database=name).render_as_string(hide_password=False)


def drop_pg_database(url: str, base_url: str = PG_URL) -> None:
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    name = make_url(url).database
    admin = create_engine(make_url(base_url), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def db_query(database_url: str, sql: str, **params: Any) -> list[tuple[Any, ...]]:
    """Read straight from the app's database (what the server holds as truth)."""
    from sqlalchemy import create_engine, text

    eng = create_engine(database_url)
    try:
        with eng.connect() as conn:
            return [tuple(row) for row in conn.execute(text(sql), params)]
    finally:
        eng.dispose()


def last_seq(database_url: str, code: str) -> int:
    rows = db_query(database_url, "SELECT last_seq FROM workshop WHERE code = :c", c=code)
    return int(rows[0][0])


def settled_seq(database_url: str, code: str, quiet: float = 1.0, timeout: float = 60) -> int:
    """The workshop's seq once it has stopped moving for `quiet` seconds (requests a
    load generator gave up on may still be committing), or after `timeout`."""
    deadline = time.monotonic() + timeout
    seq, since = last_seq(database_url, code), time.monotonic()
    while time.monotonic() < deadline and time.monotonic() - since < quiet:
        time.sleep(0.2)
        now = last_seq(database_url, code)
        if now != seq:
            seq, since = now, time.monotonic()
    return seq


# -- frames ---------------------------------------------------------------------------

_SEQ = re.compile(r'id="ws-status"[^>]*?data-seq="(\d+)"')
_DIV = re.compile(r"<(/?)div\b")
_TOP_ID = re.compile(r'<div id="([\w-]+)"')


def frame_seq(text: str) -> int | None:
    """The workshop seq a board or facilitator frame carries (#ws-status data-seq)."""
    m = _SEQ.search(text, 0, 4000) or _SEQ.search(text)
    return int(m.group(1)) if m else None


def fragments(text: str) -> dict[str, str]:
    """The top-level ``<div id=...>`` fragments of a frame, by id. User text is
    escaped, so a ``<div`` in the markup is always a real element."""
    out: dict[str, str] = {}
    pos = 0
    while (m := _TOP_ID.search(text, pos)) is not None:
        depth = 0
        for d in _DIV.finditer(text, m.start()):
            depth += -1 if d.group(1) else 1
            if depth == 0:
                end = text.index(">", d.end()) + 1
                break
        else:
            raise ValueError(f"unbalanced fragment {m.group(1)!r}")
        out[m.group(1)] = text[m.start() : end]
        pos = end
    return out


def ws_headers(token: str | None = None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"} if token else {}


# -- the client pool: many real websocket clients in a process of their own ------------
#
# bench scripts start it with `pool_start(spec)`; it opens the sockets (or joins through
# HTTP first, then opens them), says hello like app.js does, reconnects with the last seq
# after a close, and notes when each frame arrived. Frames are identified cheaply (seq,
# length, head and tail) and parsed once per distinct frame, so one process can keep up
# with thousands of sockets that all receive the same bytes.

_CARD = re.compile(r'<article class="card[^"]*" id="card-(\d+)"(.*?)</article>', re.S)
_TITLE = re.compile(r'<h4 id="card-\d+-title">([^<]*)</h4>')
_TOTAL = re.compile(r'<p class="totals"><strong>(\d+)</strong>')
_SEQ_B = re.compile(rb'id="ws-status"[^>]*?data-seq="(\d+)"')


def parse_frame(text: str) -> dict[str, Any]:
    """seq, fragment ids, and per focus area {card_id: (title, dots or None)}."""
    frags = fragments(text)
    areas: dict[int, dict[int, tuple[str, int | None]]] = {}
    for fid, html in frags.items():
        if not fid.startswith("fa-board-"):
            continue
        cards: dict[int, tuple[str, int | None]] = {}
        for m in _CARD.finditer(html):
            t = _TITLE.search(m.group(2))
            d = _TOTAL.search(m.group(2))
            cards[int(m.group(1))] = (t.group(1) if t else "", int(d.group(1)) if d else None)
        areas[int(fid.removeprefix("fa-board-"))] = cards
    return {"seq": frame_seq(text), "size": len(text), "ids": sorted(frags), "areas": areas}


class _Frames:
    def __init__(self, keep: Path | None) -> None:
        self.ids: dict[tuple[Any, ...], int] = {}
        self.infos: list[dict[str, Any]] = []
        self.keep = keep.open("wb") if keep else None

    def key(self, data: bytes) -> int:
        m = _SEQ_B.search(data, 0, 4000)
        seq = int(m.group(1)) if m else -1
        k = (seq, len(data), hash(data[:256]), hash(data[-4096:]))
        kid = self.ids.get(k)
        if kid is None:
            kid = self.ids[k] = len(self.infos)
            self.infos.append(parse_frame(data.decode()))
            if self.keep:
                pickle.dump((kid, data), self.keep)
        return kid


async def _pool_main(spec: dict[str, Any]) -> None:  # noqa: C901 - one event loop, one story
    import array
    import asyncio
    import json
    import random
    import resource

    from websockets.asyncio.client import connect
    from websockets.exceptions import ConnectionClosed, InvalidStatus

    n = int(spec["sockets"])
    frames = _Frames(Path(spec["keep_frames"]) if spec.get("keep_frames") else None)
    times = [array.array("d") for _ in range(n)]
    kids = [array.array("i") for _ in range(n)]
    last = [-1] * n
    t_full: list[float | None] = [None] * n
    t_settled: list[float | None] = [None] * n
    join_lat: list[float] = []
    join_status: Counter[str] = Counter()
    closes: Counter[str] = Counter()
    reconnects = 0
    opened = [False] * n
    gone: set[int] = set()  # sockets that could not join or connect at all
    expect = set(spec.get("expect_ids") or [])
    target = {"seq": None}
    stop = asyncio.Event()
    ready = asyncio.Event()
    ready_count = 0
    settled = asyncio.Event()
    settled_count = 0
    loop = asyncio.get_running_loop()

    def out(event: str, **data: Any) -> None:
        print(json.dumps({"event": event, **data}), flush=True)

    def note_ready(i: int) -> None:
        nonlocal ready_count
        if t_full[i] is None:
            t_full[i] = time.time()
            ready_count += 1
            if ready_count + len(gone) >= n:
                ready.set()

    def note_seq(i: int, seq: int, t: float) -> None:
        nonlocal settled_count
        if seq > last[i]:
            last[i] = seq
        tgt = target["seq"]
        if tgt is not None and t_settled[i] is None and last[i] >= tgt:
            t_settled[i] = t
            settled_count += 1
            if settled_count + len(gone) >= n:
                settled.set()

    def give_up(i: int) -> None:
        gone.add(i)
        if ready_count + len(gone) >= n:
            ready.set()
        if settled_count + len(gone) >= n:
            settled.set()

    compression = spec.get("compression", "deflate")
    open_sem = asyncio.Semaphore(int(spec.get("open_concurrency", 100)))
    join_sem = asyncio.Semaphore(int(spec.get("join_concurrency") or n))

    async def join(i: int, http: Any) -> str | None:
        body = {"display_name": f"Storm {i}", "affiliation": spec.get("affiliation", "")}
        async with join_sem:
            t0 = time.time()
            try:
                r = await http.post(f"/api/v1/workshops/{spec['code']}/participants", json=body)
            except Exception as exc:
                join_status[type(exc).__name__] += 1
                return None
            join_lat.append(time.time() - t0)
        join_status[str(r.status_code)] += 1
        return r.json()["token"] if r.status_code == 201 else None

    async def run(i: int, token: str | None, http: Any) -> None:
        nonlocal reconnects
        if spec.get("mode") == "join":
            token = await join(i, http)
            if token is None:
                give_up(i)
                return
        headers = ws_headers(token)
        attempts = 0
        while not stop.is_set() and attempts < int(spec.get("max_connects", 20)):
            attempts += 1
            try:
                async with open_sem if not opened[i] else contextlib.nullcontext():
                    ws = await connect(
                        spec["ws_url"],
                        origin=spec.get("origin"),
                        additional_headers=headers,
                        compression=compression,
                        max_size=None,
                        ping_interval=None,
                        open_timeout=60,
                        close_timeout=2,
                    )
            except (OSError, TimeoutError, InvalidStatus) as exc:
                closes[f"connect:{type(exc).__name__}"] += 1
                await asyncio.sleep(0.2 + random.random())
                continue
            if opened[i]:
                reconnects += 1
            opened[i] = True
            try:
                await ws.send(
                    json.dumps({"type": "hello", "seq": last[i] if last[i] >= 0 else None})
                )
                while True:
                    data = await ws.recv(decode=False)
                    t = time.time()
                    if isinstance(data, str):
                        data = data.encode()
                    kid = frames.key(data)
                    times[i].append(t)
                    kids[i].append(kid)
                    info = frames.infos[kid]
                    if t_full[i] is None and (not expect or expect <= set(info["ids"])):
                        note_ready(i)
                    if info["seq"] is not None:
                        note_seq(i, info["seq"], t)
            except ConnectionClosed as exc:
                code = exc.rcvd.code if exc.rcvd else None
                closes[str(code)] += 1
                if stop.is_set():
                    return
                await asyncio.sleep(0.05 + 0.3 * random.random())
            finally:
                if stop.is_set():
                    await ws.close()
        if not stop.is_set():
            give_up(i)

    import httpx as _httpx

    limits = _httpx.Limits(max_connections=n + 10, max_keepalive_connections=n + 10)
    async with _httpx.AsyncClient(
        base_url=spec.get("http_url", "http://127.0.0.1"),
        limits=limits,
        timeout=float(spec.get("http_timeout", 20)),
    ) as http:
        tokens = spec.get("tokens") or []
        t_start = time.time()
        tasks = [
            asyncio.create_task(run(i, tokens[i % len(tokens)] if tokens else None, http))
            for i in range(n)
        ]
        try:
            async with asyncio.timeout(float(spec.get("ready_timeout", 120))):
                await ready.wait()
        except TimeoutError:
            pass
        out(
            "ready",
            t_start=t_start,
            ready=ready_count,
            t_ready=max((t for t in t_full if t), default=None),
            opened=sum(opened),
        )
        while True:
            line = await loop.run_in_executor(None, sys.stdin.readline)
            if not line:
                break
            cmd = json.loads(line)
            if cmd["cmd"] == "settle":
                target["seq"] = int(cmd["seq"])
                for i in range(n):
                    note_seq(i, last[i], times[i][-1] if len(times[i]) else time.time())
                try:
                    async with asyncio.timeout(float(cmd.get("timeout", 60))):
                        await settled.wait()
                except TimeoutError:
                    pass
                out("settled", count=settled_count)
            elif cmd["cmd"] == "dump":
                break
        stop.set()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    result = {
        "frames": frames.infos,
        "times": [t.tolist() for t in times],
        "kids": [k.tolist() for k in kids],
        "t_full": t_full,
        "t_settled": t_settled,
        "join_lat": join_lat,
        "join_status": dict(join_status),
        "closes": dict(closes),
        "reconnects": reconnects,
        "opened": sum(opened),
        "cpu": usage.ru_utime + usage.ru_stime,
    }
    if frames.keep:
        frames.keep.close()
    with open(spec["out"], "wb") as f:
        pickle.dump(result, f, protocol=pickle.HIGHEST_PROTOCOL)
    out("done")


class Pool:
    """The client pool in a subprocess (`python bench/_server.py pool SPEC`): JSON
    commands on its stdin, JSON events on its stdout, the result in a pickle."""

    def __init__(self, spec: dict[str, Any], workdir: Path) -> None:
        import json
        import queue
        import threading

        workdir.mkdir(parents=True, exist_ok=True)
        self.spec = {**spec, "out": str(workdir / f"pool-{uuid.uuid4().hex[:6]}.pickle")}
        spec_path = workdir / f"spec-{uuid.uuid4().hex[:6]}.json"
        spec_path.write_text(json.dumps(self.spec))
        self.proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "pool", str(spec_path)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )
        self._events: queue.Queue[dict[str, Any]] = queue.Queue()

        def pump() -> None:
            assert self.proc.stdout is not None
            for line in self.proc.stdout:
                if line.startswith("{"):
                    self._events.put(json.loads(line))
            self._events.put({"event": "exit"})

        threading.Thread(target=pump, daemon=True).start()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def wait(self, event: str, timeout: float) -> dict[str, Any]:
        import queue

        deadline = time.monotonic() + timeout
        while True:
            try:
                got = self._events.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                raise TimeoutError(f"client pool: no {event!r} within {timeout} s") from None
            if got["event"] == event:
                return got
            if got["event"] == "exit":
                raise RuntimeError(f"client pool exited before {event!r}")

    def send(self, **cmd: Any) -> None:
        import json

        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(cmd) + "\n")
        self.proc.stdin.flush()

    def settle(self, seq: int, timeout: float) -> dict[str, Any]:
        self.send(cmd="settle", seq=seq, timeout=timeout)
        return self.wait("settled", timeout + 30)

    def finish(self, timeout: float = 120) -> dict[str, Any]:
        import pickle

        self.send(cmd="dump")
        self.wait("done", timeout)
        self.proc.wait(30)
        with open(self.spec["out"], "rb") as f:
            result: dict[str, Any] = pickle.load(f)
        return result

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


# -- what the frames say ----------------------------------------------------------------


def action_masks(frames: list[dict[str, Any]], actions: list[dict[str, Any]]) -> list[int]:
    """For each distinct frame, a bit mask of the actions whose effect it shows.

    An action is {"kind": "card", "title": T} (a card with that title is on the
    board) or {"kind": "vote", "card": C, "k": K} (card C shows at least K dots)."""
    by_title = {a["title"]: i for i, a in enumerate(actions) if a["kind"] == "card"}
    votes: dict[int, list[tuple[int, int]]] = {}
    for i, a in enumerate(actions):
        if a["kind"] == "vote":
            votes.setdefault(a["card"], []).append((a["k"], i))
    cumulative: dict[int, list[int]] = {}
    for card, ks in votes.items():
        top = max(k for k, _ in ks)
        bits = [0] * (top + 1)
        for k, i in ks:
            bits[k] |= 1 << i
        for d in range(1, top + 1):
            bits[d] |= bits[d - 1]
        cumulative[card] = bits
    masks = []
    for info in frames:
        mask = 0
        for cards in info["areas"].values():
            for card_id, (title, dots) in cards.items():
                i = by_title.get(title)
                if i is not None:
                    mask |= 1 << i
                cum = cumulative.get(card_id)
                if cum and dots:
                    mask |= cum[min(dots, len(cum) - 1)]
        masks.append(mask)
    return masks


def arrivals(result: dict[str, Any], actions: list[dict[str, Any]]) -> dict[str, Any]:
    """Latency from each action's send time to its first arrival on every socket
    (a numpy array over all (socket, action) pairs), and what never arrived."""
    import numpy as np

    masks = action_masks(result["frames"], actions)
    sent = [a["t"] for a in actions]
    everything = (1 << len(actions)) - 1
    lat: list[float] = []
    missing_pairs = 0
    missing_sockets = 0
    for times, kids in zip(result["times"], result["kids"], strict=True):
        seen = 0
        for t, kid in zip(times, kids, strict=True):
            new = masks[kid] & ~seen
            if not new:
                continue
            seen |= new
            while new:
                low = new & -new
                lat.append(t - sent[low.bit_length() - 1])
                new ^= low
        left = everything & ~seen
        if left:
            missing_sockets += 1
            missing_pairs += left.bit_count()
    return {
        "lat": np.asarray(lat, dtype=float),
        "missing_pairs": missing_pairs,
        "missing_sockets": missing_sockets,
    }


def pct(values: Any, q: float) -> float:
    import numpy as np

    arr = np.asarray(values, dtype=float)
    return float(np.percentile(arr, q)) if arr.size else float("nan")


class CpuMeter:
    """CPU seconds and peak RSS of one process between start() and stop()."""

    def __init__(self, pid: int) -> None:
        import threading

        import psutil

        self.proc = psutil.Process(pid)
        self.peak_rss = 0
        self._stop = threading.Event()
        self._thread: Any = None
        self.cpu0 = self.t0 = self.cpu = self.wall = self.wall0 = self.wall1 = 0.0

    def _cpu(self) -> float:
        t = self.proc.cpu_times()
        return float(t.user + t.system)

    def start(self) -> None:
        import threading

        self.cpu0, self.t0, self.wall0 = self._cpu(), time.monotonic(), time.time()
        self.peak_rss = self.proc.memory_info().rss

        def sample() -> None:
            while not self._stop.wait(0.25):
                with contextlib.suppress(Exception):
                    self.peak_rss = max(self.peak_rss, self.proc.memory_info().rss)

        self._thread = threading.Thread(target=sample, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self.cpu, self.wall = self._cpu() - self.cpu0, time.monotonic() - self.t0
        self.wall1 = time.time()
        self._stop.set()
        self._thread.join()

    @property
    def percent(self) -> float:
        return 100 * self.cpu / self.wall if self.wall else float("nan")


def table(headers: list[str], rows: list[list[Any]]) -> str:
    cells = [[str(c) for c in r] for r in [headers, *rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = ["  ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)) for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "pool":
        import asyncio
        import json

        with open(sys.argv[2]) as f:
            _spec = json.load(f)
        try:
            import uvloop

            uvloop.run(_pool_main(_spec))
        except ImportError:
            asyncio.run(_pool_main(_spec))
    else:
        sys.exit("usage: python bench/_server.py pool SPEC.json")
