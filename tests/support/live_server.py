"""The real app in a subprocess, as the browser tests, the security proofs, the
realtime tests and the load generators start it: ``lessons db upgrade`` and
``lessons organizer add`` on a fresh database (SQLite in its own data directory
unless a database URL is given), then ``lessons serve`` on a free port with an
environment of its own and its output in a log file. It can be stopped (SIGTERM,
as a service manager would) and started again on the same port and data. Each
user brings its own secret and organizer password, and may change the timeouts."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]
ORGANIZER = "organizer"


def bin_path(name: str) -> str:
    """A console script of this interpreter's environment, else ``name`` on PATH."""
    here = Path(sys.executable).parent / name
    return str(here) if here.exists() else name


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def stop_process(proc: subprocess.Popen[bytes], timeout: float) -> None:
    """SIGTERM, as a service manager would; SIGKILL if it hangs."""
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


class ServerProcess:
    """``lessons serve`` (one worker) on ``port`` (a free one by default) with
    ``data_dir`` as its data directory; the database there unless
    ``database_url`` is given. ``env`` is applied last, over the settings made
    here."""

    # Seconds each step may take.
    migrate_timeout = 120.0
    organizer_timeout = 120.0
    start_timeout = 30.0
    stop_timeout = 15.0

    def __init__(
        self,
        data_dir: Path,
        *,
        secret: str,
        password: str,
        port: int | None = None,
        database_url: str | None = None,
        redis_url: str | None = None,
        log_level: str = "warning",
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.data_dir = Path(data_dir)
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.ws_url = f"ws://127.0.0.1:{self.port}"
        self.log_path = self.data_dir / "server.log"
        self.database_url = database_url or f"sqlite:///{self.data_dir / 'lessons.db'}"
        self.password = password
        self.proc: subprocess.Popen[bytes] | None = None
        # The caller's own settings (a developer's DATABASE_URL, say) must not leak in.
        self.env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith("LESSONS_") and k not in ("DATABASE_URL", "REDIS_URL")
        }
        self.env.update(
            LESSONS_DATA_DIR=str(self.data_dir),
            LESSONS_PUBLIC_URL=self.url,
            SECRET_KEY=secret,
            LESSONS_LOG_LEVEL=log_level,
            PYTHONUNBUFFERED="1",
        )
        if database_url:
            self.env["DATABASE_URL"] = database_url
        if redis_url:
            self.env["REDIS_URL"] = redis_url
        self.env.update(env or {})

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def prepare(self, *, organizer: bool = True) -> None:
        """Migrate the database and add the organizer (password on stdin)."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._lessons("db", "upgrade", timeout=self.migrate_timeout)
        if organizer:
            self._lessons(
                "organizer",
                "add",
                ORGANIZER,
                timeout=self.organizer_timeout,
                stdin=self.password.encode(),
            )

    def _lessons(self, *args: str, timeout: float, stdin: bytes | None = None) -> None:
        done = subprocess.run(
            [bin_path("lessons"), *args],
            input=stdin,
            env=self.env,
            cwd=ROOT,
            capture_output=True,
            timeout=timeout,
            check=False,
        )
        if done.returncode != 0:
            command = " ".join(args[:2])
            raise RuntimeError(f"lessons {command} failed:\n{done.stderr.decode()[-2000:]}")

    def start(self, timeout: float | None = None) -> None:
        """Serve, and return once the login page answers."""
        timeout = self.start_timeout if timeout is None else timeout
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [bin_path("lessons"), "serve", "--host", "127.0.0.1", "--port", str(self.port)],
                env=self.env,
                cwd=ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the server exited at start-up:\n{self.log_tail()}")
            if self.alive():
                return
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"the server did not answer within {timeout} s:\n{self.log_tail()}")

    def alive(self) -> bool:
        """The process runs and its login page answers."""
        if self.proc is None or self.proc.poll() is not None:
            return False
        try:
            # trust_env=False: a proxy from the environment must not stand in between.
            return httpx.get(self.url + "/login", timeout=2, trust_env=False).status_code == 200
        except httpx.HTTPError:
            return False

    def stop(self, timeout: float | None = None) -> None:
        proc, self.proc = self.proc, None
        if proc is not None:
            stop_process(proc, self.stop_timeout if timeout is None else timeout)

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log_tail(self, n: int = 60) -> str:
        lines = self.log_text().splitlines()[-n:]
        return "\n".join(lines) if lines else "(no log)"


# For clients of a live server: drop idle connections well before uvicorn does
# (after 5 s), so no request goes out on a connection the server is closing.
KEEPALIVE = httpx.Limits(keepalive_expiry=1.0)
