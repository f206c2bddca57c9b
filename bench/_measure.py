"""What the load generators measure and print: percentiles, the CPU seconds and
peak memory of a process over a run, and plain-text tables."""

from __future__ import annotations

import contextlib
import threading
import time
from typing import Any

import numpy as np
import psutil


def pct(values: Any, q: float) -> float:
    arr = np.asarray(values, dtype=float)
    return float(np.percentile(arr, q)) if arr.size else float("nan")


class CpuMeter:
    """CPU seconds and peak RSS of one process between start() and stop()."""

    def __init__(self, pid: int) -> None:
        self.proc = psutil.Process(pid)
        self.peak_rss = 0
        self._stop = threading.Event()
        self._thread: Any = None
        self.cpu0 = self.t0 = self.cpu = self.wall = self.wall0 = self.wall1 = 0.0

    def _cpu(self) -> float:
        t = self.proc.cpu_times()
        return float(t.user + t.system)

    def start(self) -> None:
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
