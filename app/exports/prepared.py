"""The slow exports (PDF and DOCX), rendered once per change of what they show.

A 2,000-card PDF takes WeasyPrint half a minute. Once a workshop is closed its
content hardly changes, and the organizer's next step is the download: so on
closing (and when the report page of a closed workshop is opened) both files
are rendered in one background thread, and the download is then served at
once. Downloads render through here too, and keep what they made.

A document is rendered at most once per change of its content, however often
and by however many requests at once it is asked for:

- Each kept file is tagged with the workshop's *content seq*: the seq of its
  latest event of a kind that can change a document (``NON_CONTENT`` lists the
  kinds that cannot: downloading itself, the join lock, new links, the
  spotlight, a countdown). While that is unchanged the file is served as made,
  from one lookup.
- When it has moved, the outcome is built again (a small part of a render) and
  its fingerprint compared with the kept file's: an event that left the
  document as it was (private writing switched, a title put back) costs no
  render either, and the file is tagged with the new seq.
- The first request for a document not yet made makes it; requests for the
  same document meanwhile (the background preparation included) wait for that
  one render instead of each making their own.
- Before each fresh render, ``admit`` (set by the web layer: a rate limit per
  workshop) may refuse it by raising; a refused preparation is only skipped,
  a refused download gets what ``admit`` raised.

The files live in this process's memory only: at most a few, for at most
``TTL`` seconds. With several workers, each one renders for itself. They are
kept under the workshop's id *and uid* (ids may come back, a restored
database say; uids never do), and a kept file is served only after the
session has found the workshop, with that uid, in the database: a workshop
deleted or purged by another process is never served from here, even before
``forget_uid`` (called in every process when any deletes one) drops its files.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

from sqlalchemy import Engine
from sqlmodel import Session, col, func, select

from app.exports import FORMATS, ExportFile, export_workshop, slugify
from app.exports.outcome import Outcome, build_outcome
from app.models import Event, Workshop

log = logging.getLogger(__name__)

PREPARED = ("pdf", "docx")
TTL = 30 * 60.0
EXPORT_EVENT = "export.created"
# Events that never change what a document shows. Any other kind (one added
# later included) counts as a change: the safe side, a render too many at worst.
NON_CONTENT = frozenset(
    {
        EXPORT_EVENT,  # a download, recorded for the audit trail
        "workshop.locked",  # the join lock
        "workshop.rotated",  # new facilitator and projector links, or join code
        "workshop.spotlight",  # which focus area the projector follows
        "focus_area.timer",  # a countdown
        "workshop.owner_changed",  # who manages the workshop, not what it found
    }
)

# Raises to refuse one fresh render of (workshop id, format).
Admit = Callable[[int, str], None]


def content_seq(session: Session, workshop_id: int) -> int | None:
    """The seq of the workshop's latest event that may have changed what an
    export shows (every change records an event; see ``NON_CONTENT``)."""
    return session.exec(
        select(func.max(Event.seq)).where(
            Event.workshop_id == workshop_id, col(Event.kind).not_in(NON_CONTENT)
        )
    ).one()


def fingerprint(outcome: Outcome, filename: str) -> str:
    """What a document is made from, as a digest: the renderers read nothing
    else, so equal fingerprints make equal files."""
    data = repr((filename, dataclasses.asdict(outcome)))
    return hashlib.sha256(data.encode()).hexdigest()


class Refused(Exception):
    """``admit`` refused a fresh render; ``reason`` is what it raised."""

    def __init__(self, reason: Exception) -> None:
        super().__init__(str(reason))
        self.reason = reason


@dataclass
class _Entry:
    seq: int | None  # None: not to be served by seq (the content moved while it was made)
    made: float  # when asked for, then when made
    file: Future[ExportFile]
    digest: str = ""  # known once its outcome is built, before the render


def _made(entry: _Entry | None) -> bool:
    return entry is not None and entry.file.done() and entry.file.exception() is None


class PreparedExports:
    def __init__(self, engine: Engine, *, max_entries: int = 8, ttl: float = TTL) -> None:
        self._engine = engine
        self._max = max_entries
        self._ttl = ttl
        self._lock = threading.Lock()
        self._entries: OrderedDict[tuple[int, str, str], _Entry] = OrderedDict()  # id, uid, fmt
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="export-prepare")
        # Fresh renders made, by format: what the rules above promise to keep low.
        self.renders: Counter[str] = Counter()
        self.admit: Admit | None = None

    def prepare(self, workshop_id: int) -> None:
        """Render the slow formats of this workshop in the background, unless
        they are made already."""
        for fmt in PREPARED:
            self._pool.submit(self._prepare_one, workshop_id, fmt)

    def export(self, session: Session, workshop_id: int, fmt: str) -> ExportFile:
        """The file as made for the workshop's current content, made now if it
        is not (waiting for a render of it already under way)."""
        if fmt not in PREPARED:
            return export_workshop(session, workshop_id, fmt)
        try:
            return self._obtain(session, workshop_id, fmt).result()
        except Refused as refused:
            raise refused.reason from None

    def ready(self, workshop_id: int, fmt: str) -> bool:
        with self._lock:
            return any(
                _made(e) for k, e in self._entries.items() if k[0] == workshop_id and k[2] == fmt
            )

    def forget(self, workshop_id: int) -> None:
        with self._lock:
            for key in [k for k in self._entries if k[0] == workshop_id]:
                del self._entries[key]

    def forget_uid(self, uid: str) -> None:
        """Drop the files of the workshop with this uid (it was deleted)."""
        with self._lock:
            for key in [k for k in self._entries if k[1] == uid]:
                del self._entries[key]

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        with self._lock:
            self._entries.clear()

    def _prepare_one(self, workshop_id: int, fmt: str) -> None:
        try:
            with Session(self._engine) as session:
                self._obtain(session, workshop_id, fmt).result()
        except Refused as refused:
            log.info("not preparing the %s of workshop %s: %s", fmt, workshop_id, refused)
        except LookupError:
            log.info("not preparing the %s of workshop %s: it was deleted", fmt, workshop_id)
        except Exception:
            log.exception("preparing the %s export of workshop %s failed", fmt, workshop_id)

    def _obtain(self, session: Session, workshop_id: int, fmt: str) -> Future[ExportFile]:
        """The file for the content the session sees: kept, being made, or
        made here (by the one caller that found it neither). Only for a
        workshop the session finds, and only what was made for its uid."""
        uid = session.exec(select(Workshop.uid).where(Workshop.id == workshop_id)).first()
        if uid is None:
            raise LookupError(f"workshop {workshop_id} not found")
        seq = content_seq(session, workshop_id)
        key = (workshop_id, uid, fmt)
        mine = _Entry(seq, time.monotonic(), Future())
        with self._lock:
            self._expire()
            previous = self._entries.get(key)
            if previous is not None and seq is not None and previous.seq == seq:
                self._entries.move_to_end(key)
                return previous.file
            if seq is not None:
                self._entries[key] = mine
                self._entries.move_to_end(key)
                while len(self._entries) > self._max:
                    self._entries.popitem(last=False)
        try:
            file = self._make(session, workshop_id, fmt, seq, mine, previous)
            with self._lock:
                mine.made = time.monotonic()  # kept for TTL from when it is made
            mine.file.set_result(file)
        except BaseException as exc:  # whatever happens, no waiter is left waiting
            mine.file.set_exception(exc)
            with self._lock:  # keep what was there: it may still serve a later request
                if self._entries.get(key) is mine:
                    if _made(previous):
                        assert previous is not None
                        self._entries[key] = previous
                    else:
                        del self._entries[key]
            if not isinstance(exc, Exception):
                raise
        return mine.file

    def _make(
        self,
        session: Session,
        workshop_id: int,
        fmt: str,
        seq: int | None,
        mine: _Entry,
        previous: _Entry | None,
    ) -> ExportFile:
        ws = session.get(Workshop, workshop_id)
        if ws is None:
            raise LookupError(f"workshop {workshop_id} not found")
        spec = FORMATS[fmt]
        assert spec.render is not None
        stem = slugify(ws.title) + (f"-{ws.date.isoformat()}" if ws.date else "")
        filename = f"{stem}.{spec.extension}"
        outcome = build_outcome(session, workshop_id)
        digest = fingerprint(outcome, filename)
        moved = content_seq(session, workshop_id) != seq
        with self._lock:
            mine.digest = digest
            if moved:  # the content changed while it was read: a blend, not that seq
                mine.seq = None
        if previous is not None and previous.digest == digest:
            try:  # the same document, made or being made: no render
                return previous.file.result()
            except Exception:  # noqa: S110 - that attempt failed; this one renders
                pass
        if self.admit is not None:
            try:
                self.admit(workshop_id, fmt)
            except Exception as exc:
                raise Refused(exc) from exc
        with self._lock:
            self.renders[fmt] += 1
        return ExportFile(spec.render(outcome), spec.media_type, filename)

    def _expire(self) -> None:
        now = time.monotonic()
        for key in [k for k, e in self._entries.items() if now - e.made > self._ttl]:
            del self._entries[key]
