"""The slow exports (PDF and DOCX) of a closed workshop, prepared ahead.

A 2,000-card PDF takes WeasyPrint half a minute. Once a workshop is closed its
content hardly changes, and the organizer's next step is the download: so on
closing (and when the report page of a closed workshop is opened) both files
are rendered in one background thread, and the download is then served at
once. A prepared file is tied to the workshop's *content seq*, the sequence
number of its latest event other than an export, and is used only while that
is still the latest: any change (an edit of the title, a reopened phase)
makes the next download render afresh, as before.

The files live in this process's memory only: at most a few, for at most
``TTL`` seconds, dropped at once when the workshop is deleted. With several
workers, only the one that prepared a file serves it from memory; the others
render as before.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

from sqlalchemy import Engine
from sqlmodel import Session, col, func, select

from app.exports import ExportFile, export_workshop
from app.models import Event

log = logging.getLogger(__name__)

PREPARED = ("pdf", "docx")
TTL = 30 * 60.0
EXPORT_EVENT = "export.created"


def content_seq(session: Session, workshop_id: int) -> int | None:
    """The seq of the workshop's latest event that changed what an export
    shows (every change records an event; exporting itself changes nothing)."""
    return session.exec(
        select(func.max(Event.seq)).where(
            Event.workshop_id == workshop_id, col(Event.kind) != EXPORT_EVENT
        )
    ).one()


class _Outdated(Exception):
    pass


def _failed(file: Future[ExportFile]) -> bool:
    """Waits for a file being made; true if it failed or came out outdated
    (the failure was logged where it happened)."""
    return file.exception() is not None


@dataclass
class _Entry:
    seq: int
    made: float
    file: Future[ExportFile]


class PreparedExports:
    def __init__(self, engine: Engine, *, max_entries: int = 8, ttl: float = TTL) -> None:
        self._engine = engine
        self._max = max_entries
        self._ttl = ttl
        self._lock = threading.Lock()
        self._entries: OrderedDict[tuple[int, str], _Entry] = OrderedDict()
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="export-prepare")

    def prepare(self, workshop_id: int) -> None:
        """Render the slow formats of this workshop in the background."""
        for fmt in PREPARED:
            self._pool.submit(self._prepare_one, workshop_id, fmt)

    def export(self, session: Session, workshop_id: int, fmt: str) -> ExportFile:
        """The file, prepared if it still matches the workshop, else rendered
        now (and kept if nothing changed meanwhile)."""
        if fmt not in PREPARED:
            return export_workshop(session, workshop_id, fmt)
        seq = content_seq(session, workshop_id)
        entry = self._fresh(workshop_id, fmt, seq)
        if entry is not None and not _failed(entry.file):
            return entry.file.result()
        file = export_workshop(session, workshop_id, fmt)
        if seq is not None and content_seq(session, workshop_id) == seq:
            done: Future[ExportFile] = Future()
            done.set_result(file)
            self._store(workshop_id, fmt, _Entry(seq, time.monotonic(), done))
        return file

    def ready(self, workshop_id: int, fmt: str) -> bool:
        with self._lock:
            entry = self._entries.get((workshop_id, fmt))
            return entry is not None and entry.file.done()

    def forget(self, workshop_id: int) -> None:
        with self._lock:
            for key in [k for k in self._entries if k[0] == workshop_id]:
                del self._entries[key]

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        with self._lock:
            self._entries.clear()

    def _prepare_one(self, workshop_id: int, fmt: str) -> None:
        with Session(self._engine) as session:
            seq = content_seq(session, workshop_id)
            if seq is None or self._fresh(workshop_id, fmt, seq) is not None:
                return
            pending: Future[ExportFile] = Future()
            self._store(workshop_id, fmt, _Entry(seq, time.monotonic(), pending))
            try:
                file = export_workshop(session, workshop_id, fmt)
            except Exception as exc:
                log.exception("preparing the %s export of workshop %s failed", fmt, workshop_id)
                pending.set_exception(exc)
                self._drop(workshop_id, fmt, pending)
                return
            if content_seq(session, workshop_id) != seq:  # changed while rendering
                pending.set_exception(_Outdated())
                self._drop(workshop_id, fmt, pending)
            else:
                pending.set_result(file)

    def _fresh(self, workshop_id: int, fmt: str, seq: int | None) -> _Entry | None:
        with self._lock:
            self._expire()
            entry = self._entries.get((workshop_id, fmt))
            if entry is None or entry.seq != seq:
                return None
            self._entries.move_to_end((workshop_id, fmt))
            return entry

    def _store(self, workshop_id: int, fmt: str, entry: _Entry) -> None:
        with self._lock:
            self._entries[(workshop_id, fmt)] = entry
            self._entries.move_to_end((workshop_id, fmt))
            while len(self._entries) > self._max:
                self._entries.popitem(last=False)

    def _drop(self, workshop_id: int, fmt: str, file: Future[ExportFile]) -> None:
        with self._lock:
            entry = self._entries.get((workshop_id, fmt))
            if entry is not None and entry.file is file:
                del self._entries[(workshop_id, fmt)]

    def _expire(self) -> None:
        now = time.monotonic()
        for key in [k for k, e in self._entries.items() if now - e.made > self._ttl]:
            del self._entries[key]
