"""The client pool: many real websocket clients in a process of their own, driven
by a load generator through JSON lines on its stdin and stdout (see ``Pool``)."""

from __future__ import annotations

import array
import asyncio
import contextlib
import json
import pickle
import queue
import random
import re
import resource
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script: `python bench/_pool.py pool SPEC`
    sys.path.insert(0, str(ROOT))

from bench._frames import parse_frame  # noqa: E402

# -- the client pool: many real websocket clients in a process of their own ------------
#
# bench scripts start it with `Pool(spec, workdir)`; it opens the sockets (or joins through
# HTTP first, then opens them), says hello like app.js does, reconnects with the last seq
# after a close, and notes when each frame arrived. Frames are identified cheaply (seq,
# length, head and tail) and parsed once per distinct frame, so one process can keep up
# with thousands of sockets that all receive the same bytes.

_SEQ_B = re.compile(rb'id="ws-status"[^>]*?data-seq="(\d+)"')


def ws_headers(token: str | None = None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"} if token else {}


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

    limits = httpx.Limits(max_connections=n + 10, max_keepalive_connections=n + 10)
    async with httpx.AsyncClient(
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
    """The client pool in a subprocess (`python bench/_pool.py pool SPEC`): JSON
    commands on its stdin, JSON events on its stdout, the result in a pickle."""

    def __init__(self, spec: dict[str, Any], workdir: Path) -> None:
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
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(cmd) + "\n")
        self.proc.stdin.flush()

    def settle(self, seq: int, timeout: float) -> dict[str, Any]:
        self.send(cmd="settle", seq=seq, timeout=timeout)
        return self.wait("settled", timeout + 30)

    def finish(self, timeout: float = 120) -> dict[str, Any]:
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


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "pool":
        with open(sys.argv[2]) as f:
            _spec = json.load(f)
        try:
            import uvloop

            uvloop.run(_pool_main(_spec))
        except ImportError:
            asyncio.run(_pool_main(_spec))
    else:
        sys.exit("usage: python bench/_pool.py pool SPEC.json")
