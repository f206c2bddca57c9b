"""Cost limits on the reads that cost the server real work: the similar-cards
hint (one sentence embedding per new text), proposed clusters (clustering the
loose cards of a focus area) and the PDF and DOCX renders behind the report
page and the downloads. A caller who asks too often is answered 429 (the hint
typed into the card form goes quiet instead, with an empty fragment) and costs
nothing more; everyone else is still served. A prepared document is rendered
at most once per change of what it shows, however often it is asked for and by
however many requests at once. Counts of answers and renders, never times:
speed is in bench/costly_reads.py."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session

from app.db import read_engine
from app.domain import events, phases, workshops
from app.exports import FORMATS
from app.exports.outcome import Outcome, build_outcome
from app.exports.prepared import NON_CONTENT, PREPARED, PreparedExports, content_seq, fingerprint
from app.models import Workshop
from tests import factories as f
from tests.conftest import SECRET

from .world import World, organizer_accounts, seed


def _world(client: TestClient) -> World:
    with Session(client.app.state.engine, expire_on_commit=False) as s:  # type: ignore[attr-defined]
        return seed(s, SECRET)


def _retry_after(r: Any) -> int:
    assert r.status_code == 429, r.text[:300]
    return int(r.headers["retry-after"])


class Calls:
    """Counts the calls of one engine function, still doing the real work."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, name: str) -> None:
        from app.suggest import engine

        self.n = 0
        real = getattr(engine, name)

        def counted(*args: Any, **kw: Any) -> Any:
            self.n += 1
            return real(*args, **kw)

        monkeypatch.setattr(engine, name, counted)


# -- similar cards ---------------------------------------------------------------------


def _similar(client: TestClient, w: World, token: str, text: str) -> Any:
    return client.get(
        f"/api/v1/workshops/{w.code}/similar",
        params={"focus_area_id": w.fa_c.id, "text": text},
        headers=f.bearer(token),
    )


def test_a_participant_hammering_similar_is_refused_while_another_gets_answers(
    client_with: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = client_with(rate_similar_per_minute=3)
    w = _world(client)
    calls = Calls(monkeypatch, "similar")
    pat = w.tokens["participant"]
    # Texts too short to look anything up cost nothing and count nothing.
    for text in ("J", "Wi", "Wit"):
        assert _similar(client, w, pat, text).json() == []
    for i in range(3):
        r = _similar(client, w, pat, f"Witness protection programme number {i}")
        assert r.status_code == 200, r.text
    assert calls.n == 3
    r = _similar(client, w, pat, "Witness protection programme, once more")
    assert _retry_after(r) > 0
    assert "similar cards" in r.json()["error"]["message"]
    # The hint typed into the card form shares the budget; it goes quiet (an
    # empty fragment, nothing for the page to show as an error) rather than fail.
    r = client.get(
        f"/w/{w.code}/similar",
        params={"focus_area_id": w.fa_c.id, "title": "Witness protection programme"},
        headers={**w.headers("participant"), "HX-Request": "true"},
    )
    assert r.status_code == 200 and r.text.strip() == ""
    assert calls.n == 3, "a refused look-up must not reach the engine"
    # Another participant is not held back, and gets real answers.
    client.cookies.clear()
    r = _similar(client, w, w.tokens["author2"], "Joint investigation teams across borders")
    assert r.status_code == 200 and [m["title"] for m in r.json()] == ["Joint investigation teams"]


def test_similar_is_limited_per_workshop(client_with: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    client = client_with(rate_similar_per_minute=100, rate_similar_per_workshop_per_minute=4)
    w = _world(client)
    calls = Calls(monkeypatch, "similar")
    with Session(client.app.state.engine, expire_on_commit=False) as s:  # type: ignore[attr-defined]
        ws = s.get(Workshop, w.wid)
        assert ws is not None
        tokens = [f.join(s, ws, f"Typist {i}", "ODIHR", secret=SECRET)[1] for i in range(5)]
    statuses = [
        _similar(client, w, tokens[i], f"Witness protection, typist {i}").status_code
        for i in range(5)
    ]
    assert statuses == [200, 200, 200, 200, 429]
    assert calls.n == 4
    # Another workshop on the same server still gets its hints.
    other = _world(client)
    r = _similar(client, other, other.tokens["author2"], "Joint investigation teams")
    assert r.status_code == 200 and r.json()


# -- proposed clusters -----------------------------------------------------------------


def _suggest(client: TestClient, w: World, headers: dict[str, str]) -> Any:
    return client.get(
        f"/api/v1/workshops/{w.code}/focus-areas/{w.fa_c.id}/suggestions", headers=headers
    )


def test_suggestions_are_limited_per_staff_member_and_per_workshop(
    client_with: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = client_with(rate_suggestions_per_minute=2, rate_suggestions_per_workshop_per_minute=3)
    w = _world(client)
    calls = Calls(monkeypatch, "suggest_clusters")
    fac = f.bearer(w.tokens["facilitator"])
    assert [_suggest(client, w, fac).status_code for _ in range(2)] == [200, 200]
    r = _suggest(client, w, fac)
    assert _retry_after(r) > 0
    assert "suggestions" in r.json()["error"]["message"].lower()
    # The console's button shares the budget; its 429 carries the message the
    # page shows next to the button (JSON, as for every htmx error).
    r = client.get(
        f"/w/{w.code}/fa/{w.fa_c.id}/suggestions",
        headers={**w.headers("facilitator"), "HX-Request": "true"},
    )
    assert _retry_after(r) > 0 and r.json()["error"]["message"]
    assert calls.n == 2
    # The organizer is another person: served, until the workshop's budget is spent.
    client.cookies.clear()
    assert _suggest(client, w, w.headers("organizer")).status_code == 200
    client.cookies.clear()
    assert _retry_after(_suggest(client, w, w.headers("organizer"))) > 0
    assert calls.n == 3
    # Another workshop is not held back.
    client.cookies.clear()
    other = _world(client)
    assert _suggest(client, other, f.bearer(other.tokens["facilitator"])).status_code == 200


# -- prepared documents ----------------------------------------------------------------


class Renders:
    """Stands in for the slow renderers (PDF, DOCX) and counts their calls;
    with ``gate`` set, each render waits for it (to hold renders in flight)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.count: Counter[str] = Counter()
        self.started = threading.Event()
        self.gate: threading.Event | None = None
        self._lock = threading.Lock()
        for fmt in PREPARED:
            monkeypatch.setitem(FORMATS, fmt, replace(FORMATS[fmt], render=self._fake(fmt)))

    def _fake(self, fmt: str) -> Callable[[Outcome], bytes]:
        def render(outcome: Outcome) -> bytes:
            with self._lock:
                self.count[fmt] += 1
            self.started.set()
            if self.gate is not None:
                assert self.gate.wait(30), "the test never opened the gate"
            return f"{fmt} of {outcome.title}".encode()

        return render


def _drain(exports: PreparedExports) -> None:
    """Wait until every background preparation asked for so far has run."""
    exports._pool.submit(lambda: None).result(timeout=60)


def _close(client: TestClient, w: World) -> None:
    with Session(client.app.state.engine) as s:  # type: ignore[attr-defined]
        ws = s.get(Workshop, w.wid)
        assert ws is not None
        workshops.close_workshop(s, workshop=ws)
        s.commit()


def test_toggling_the_lock_and_opening_the_report_renders_once(
    client_with: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = client_with()
    renders = Renders(monkeypatch)
    w = _world(client)
    _close(client, w)
    exports: PreparedExports = client.app.state.exports  # type: ignore[attr-defined]
    org = w.headers("organizer")
    for i in range(6):
        r = client.post(f"/w/{w.code}/lock", data={"locked": str(i % 2)}, headers=org)
        assert r.status_code == 204, r.text
        assert client.get(f"/w/{w.code}/report", headers=org).status_code == 200
        _drain(exports)
    for fmt in PREPARED:
        r = client.get(f"/w/{w.code}/export/{fmt}", headers=org)
        assert r.status_code == 200 and r.content == f"{fmt} of {w.ws.title}".encode()
    assert renders.count == {"pdf": 1, "docx": 1}
    assert exports.renders == renders.count


def test_events_that_change_no_document_are_not_content_changes(
    client_with: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = client_with()
    renders = Renders(monkeypatch)
    w = _world(client)
    exports: PreparedExports = client.app.state.exports  # type: ignore[attr-defined]
    org = w.headers("organizer")
    assert client.get(f"/w/{w.code}/export/pdf", headers=org).status_code == 200
    with Session(client.app.state.engine, expire_on_commit=False) as s:  # type: ignore[attr-defined]
        ws = s.get(Workshop, w.wid)
        assert ws is not None
        before, seq0 = content_seq(s, w.wid), ws.last_seq
        document = fingerprint(build_outcome(s, w.wid), "")
        owner, other = organizer_accounts(s)
        fa = workshops.get_focus_area(s, ws, w.fa_c.id or 0)
        workshops.lock_joins(s, workshop=ws, locked=True, actor="organizer")
        workshops.rotate(s, workshop=ws, what="keys")
        workshops.rotate(s, workshop=ws, what="code")
        phases.set_timer(s, workshop=ws, focus_area=fa, minutes=5, actor="organizer")
        phases.set_spotlight(s, workshop=ws, focus_area=fa, actor="organizer")
        workshops.set_owner(s, workshop=ws, organizer_id=other.id or 0)
        workshops.set_owner(s, workshop=ws, organizer_id=owner.id or 0)
        events.record(s, workshop_id=w.wid, kind="export.created", actor="organizer")
        s.commit()
        assert content_seq(s, w.wid) == before
        # What the list claims: none of these shows in a document (and each
        # kind on the list is tried here).
        assert fingerprint(build_outcome(s, w.wid), "") == document
        assert {e.kind for e in events.events_since(s, w.wid, seq0)} == NON_CONTENT
        code = ws.code
    assert client.get(f"/w/{code}/export/pdf", headers=org).status_code == 200
    assert renders.count == {"pdf": 1}
    # A recorded change that leaves the document as it was (private writing
    # shapes the board, not the outcome) costs no second render either.
    with Session(client.app.state.engine, expire_on_commit=False) as s:  # type: ignore[attr-defined]
        ws = s.get(Workshop, w.wid)
        assert ws is not None
        workshops.update_workshop(s, workshop=ws, changes={"private_writing": True})
        s.commit()
    assert client.get(f"/w/{code}/export/pdf", headers=org).status_code == 200
    assert renders.count == {"pdf": 1}
    # A real change renders afresh.
    with Session(client.app.state.engine, expire_on_commit=False) as s:  # type: ignore[attr-defined]
        ws = s.get(Workshop, w.wid)
        assert ws is not None
        workshops.update_workshop(s, workshop=ws, changes={"title": "Renamed outcome"})
        s.commit()
    r = client.get(f"/w/{code}/export/pdf", headers=org)
    assert r.status_code == 200 and r.content == b"pdf of Renamed outcome"
    assert renders.count == {"pdf": 2}
    assert exports.renders == renders.count


@pytest.fixture
def gated(engine: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Renders, Any]]:
    renders = Renders(monkeypatch)
    renders.gate = threading.Event()
    cache = PreparedExports(read_engine(engine))  # as the app makes it
    yield renders, cache
    renders.gate.set()
    cache.close()


def test_concurrent_requests_for_one_document_wait_for_one_render(
    gated: tuple[Renders, PreparedExports], engine: Any, session: Session
) -> None:
    renders, cache = gated
    w = seed(session, SECRET)
    session.close()
    got: list[bytes] = []
    failed: list[BaseException] = []

    def download() -> None:
        try:  # each on its own read-only session, as a GET request is
            with Session(read_engine(engine)) as s:
                got.append(cache.export(s, w.wid, "pdf").content)
        except BaseException as exc:  # noqa: BLE001 - reported by the test below
            failed.append(exc)

    threads = [threading.Thread(target=download) for _ in range(6)]
    threads[0].start()
    assert renders.started.wait(30)
    for t in threads[1:]:
        t.start()
    cache.prepare(w.wid)  # the report page, opened meanwhile
    # Let the others reach the cache while the first render is still in flight
    # (not a timing assertion: later arrivals would find the file made anyway).
    threading.Event().wait(0.5)
    assert renders.gate is not None
    renders.gate.set()
    for t in threads:
        t.join(60)
    _drain(cache)
    assert not failed, failed
    assert got == [b"pdf of " + w.ws.title.encode()] * 6
    assert renders.count["pdf"] == 1


def test_cold_renders_are_limited_per_workshop(
    client_with: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = client_with(rate_renders_per_minute=2)
    renders = Renders(monkeypatch)
    w = _world(client)
    org = w.headers("organizer")
    exports: PreparedExports = client.app.state.exports  # type: ignore[attr-defined]

    def rename(title: str) -> None:
        with Session(client.app.state.engine) as s:  # type: ignore[attr-defined]
            ws = s.get(Workshop, w.wid)
            assert ws is not None
            workshops.update_workshop(s, workshop=ws, changes={"title": title})
            s.commit()

    statuses = []
    for i in range(3):
        rename(f"Outcome, draft {i}")
        statuses.append(client.get(f"/w/{w.code}/export/pdf", headers=org))
    assert [r.status_code for r in statuses[:2]] == [200, 200]
    assert _retry_after(statuses[2]) > 0
    # A download link opened in the browser: the error page says why.
    assert "PDF was made afresh too often" in statuses[2].text
    assert renders.count == {"pdf": 2}
    # Over the limit, a document already made is still served: put the title
    # back and the outcome is the one rendered last, whatever events came since.
    rename("Outcome, draft 1")
    r = client.get(f"/w/{w.code}/export/pdf", headers=org)
    assert r.status_code == 200 and r.content == b"pdf of Outcome, draft 1"
    # The report page still opens; it only does not prepare the downloads.
    _close(client, w)
    assert client.get(f"/w/{w.code}/report", headers=org).status_code == 200
    _drain(exports)
    assert renders.count == {"pdf": 2}
    # Quick formats are not renders of this kind, and other workshops render.
    assert client.get(f"/w/{w.code}/export/md", headers=org).status_code == 200
    other = _world(client)
    client.cookies.clear()
    r = client.get(f"/w/{other.code}/export/pdf", headers=other.headers("organizer"))
    assert r.status_code == 200
    assert renders.count == {"pdf": 3}
