"""Injection: card and cluster text that looks like HTML, htmx attributes,
template code or a javascript: URL stays inert text on the board, the
console, the projector and in websocket frames, and sits inside an element
carrying ``hx-disable``. A Hypothesis test fuzzes card text through the API
and checks that it round-trips and appears escaped on the board."""

from __future__ import annotations

from html.parser import HTMLParser
from typing import Any

from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from markupsafe import escape
from sqlmodel import Session

from app.domain import clusters, phases
from app.models import Participant
from tests import factories as f
from tests.conftest import SECRET

from .world import World, leave, seed

PAYLOADS = [
    "<script>alert(1)</script>",
    "<img src=x onerror=alert(1)>",
    'hx-get="/x"',
    'hx-on:click="alert(1)"',
    "{{ 7*7 }}",
    "javascript:alert(1)",
]
VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source"}
VOID |= {"track", "wbr"}
# Attributes that act (load, navigate, run, or make htmx send a request).
ACTIVE_PREFIXES = ("on", "hx-", "data-hx-")
ACTIVE = {"href", "src", "action", "formaction", "srcdoc", "style", "ws-connect", "ws-send"}
# Escaped text inside form controls cannot carry attributes or elements; it is
# where the facilitator edits or picks cluster and card titles.
CONTROL_TEXT = {"option", "textarea", "label"}


class Inspector(HTMLParser):
    """Walks a page or fragment and lists every way user text could act."""

    def __init__(self, needles: list[str], require_disable: bool = True) -> None:
        super().__init__(convert_charrefs=True)
        self.needles = needles
        self.require_disable = require_disable
        self.stack: list[tuple[str, bool]] = []  # (tag, inside hx-disable)
        self.problems: list[str] = []
        self.seen: set[str] = set()

    def _disabled(self) -> bool:
        return bool(self.stack) and self.stack[-1][1]

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        names = {name for name, _ in attrs}
        if tag == "script" and "src" not in names:
            self.problems.append("an inline <script>")
        if tag == "img" and dict(attrs).get("src") == "x":
            self.problems.append("an <img src=x> element")
        for name, value in attrs:
            value = value or ""
            active = name.startswith(ACTIVE_PREFIXES) or name in ACTIVE
            if name.startswith("on"):
                self.problems.append(f"an event handler attribute {name}= on <{tag}>")
            if name == "hx-get" and value == "/x":
                self.problems.append("an hx-get=/x attribute")
            if active and value.strip().lower().startswith("javascript:"):
                self.problems.append(f"a javascript: URL in {name}= on <{tag}>")
            if active and any(n in value for n in self.needles):
                self.problems.append(f"user text in the active attribute {name}= on <{tag}>")
        if tag not in VOID:
            self.stack.append((tag, self._disabled() or "hx-disable" in names))

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)
        if tag not in VOID:
            self.stack.pop()

    def handle_endtag(self, tag: str) -> None:
        for i in range(len(self.stack) - 1, -1, -1):
            if self.stack[i][0] == tag:
                del self.stack[i:]
                return

    def handle_data(self, data: str) -> None:
        for needle in self.needles:
            if needle in data:
                self.seen.add(needle)
                tag = self.stack[-1][0] if self.stack else "?"
                if self.require_disable and not self._disabled() and tag not in CONTROL_TEXT:
                    self.problems.append(f"user text outside hx-disable in <{tag}>: {needle!r}")


def inspect(html: str, needles: list[str], where: str, require_disable: bool = True) -> set[str]:
    """Assert ``html`` shows the needles only as inert text; return those seen."""
    parser = Inspector(needles, require_disable)
    parser.feed(html)
    parser.close()
    assert not parser.problems, f"{where}:\n" + "\n".join(sorted(set(parser.problems)))
    for payload in needles:
        if str(escape(payload)) != payload:
            assert payload not in html, f"{where}: {payload!r} appears unescaped"
    return parser.seen


def _payload_world(session: Session) -> World:
    w = seed(session, SECRET)
    participant = session.get(Participant, w.participant_id)
    for p in PAYLOADS:
        f.card(session, w.ws, participant, w.fa_c.id, title=p, body=p)
    cl = clusters.create_cluster(
        session, workshop=w.ws, focus_area=w.fa_c, title=PAYLOADS[1], actor="organizer"
    )
    clusters.update_cluster(
        session, workshop=w.ws, cluster_id=cl.id, actor="organizer", synthesis=PAYLOADS[0]
    )
    phases.set_spotlight(session, workshop=w.ws, focus_area=w.fa_c, actor="organizer")
    session.commit()
    return w


def test_card_and_cluster_text_is_inert_on_every_page(client: TestClient, session: Session) -> None:
    w = _payload_world(session)
    # The live views keep user text inside hx-disable; the read-only report
    # page is checked for escaping only (it swaps nothing in).
    pages = {
        "board": ("participant", f"/w/{w.code}", True),
        "console": ("facilitator", f"/w/{w.code}/console", True),
        "projector": ("projector", f"/w/{w.code}/projector", True),
        "my cards": ("participant", f"/w/{w.code}/mine/{w.fa_c.id}", True),
        "report": ("organizer", f"/w/{w.code}/report", False),
    }
    for name, (role, path, live) in pages.items():
        client.cookies.clear()
        r = client.get(path, headers=w.headers(role))
        assert r.status_code == 200, name
        seen = inspect(r.text, PAYLOADS, name, require_disable=live)
        # Every payload is shown, as text (the projector shows titles only).
        assert seen == set(PAYLOADS), f"{name}: missing {set(PAYLOADS) - seen}"
        assert "{{ 7*7 }}" in r.text, f"{name}: template code was evaluated"


def test_card_text_is_inert_in_websocket_frames(client: TestClient, session: Session) -> None:
    w = _payload_world(session)
    url = f"/ws/workshops/{w.code}"
    origin = {"Origin": "http://testserver"}
    for role in ("participant", "facilitator", "projector"):
        client.cookies.clear()
        with client.websocket_connect(url, headers={**w.headers(role), **origin}) as sock:
            sock.send_text('{"type": "hello", "seq": null}')
            full = sock.receive_text()
            seen = inspect(full, PAYLOADS, f"{role} full frame")
            assert seen == set(PAYLOADS), f"{role}: missing {set(PAYLOADS) - seen}"
            # A live push of a new card, rendered by the same partials.
            r = client.post(
                f"/api/v1/workshops/{w.code}/cards",
                json={
                    "focus_area_id": w.fa_c.id,
                    "kind": "lesson",
                    "title": f"{role} <b onmouseover=alert(2)>x</b>",
                    "body": '"><svg onload=alert(3)>',
                },
                headers=f.bearer(w.tokens["author2"]),
            )
            assert r.status_code == 201
            frame = sock.receive_text()
            while f"card-{r.json()['id']}" not in frame and 'id="projector"' not in frame:
                frame = sock.receive_text()
            inspect(frame, ["alert(2)", "alert(3)"], f"{role} push")
            leave(sock, client.app)


# Text the API may hold: anything but NUL (PostgreSQL text cannot store it;
# see test_nul_characters_are_refused_cleanly) and surrogates (not UTF-8).
TEXT = st.characters(blacklist_categories=["Cs"], blacklist_characters="\x00")


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(title=st.text(TEXT, min_size=1, max_size=140), body=st.text(TEXT, max_size=400))
def test_fuzzed_card_text_round_trips_and_is_escaped_on_the_board(
    client_with: Any, title: str, body: str
) -> None:
    if not title.strip():
        return  # refused with 422: covered by tests/web/test_api_flow.py
    client = _fuzz_client(client_with)
    w: World = client.fuzz_world  # type: ignore[attr-defined]
    r = client.post(
        f"/api/v1/workshops/{w.code}/cards",
        json={"focus_area_id": w.fa_c.id, "kind": "tool", "title": title, "body": body},
        headers=f.bearer(w.tokens["participant"]),
    )
    assert r.status_code == 201, r.text
    card_id = r.json()["id"]
    listed = client.get(f"/api/v1/workshops/{w.code}/cards", headers=f.bearer(w.tokens["author2"]))
    got = {c["id"]: c for c in listed.json()}[card_id]
    assert got["title"] == title.strip()
    assert got["body"] == body.strip()
    board = client.get(f"/w/{w.code}", headers=w.headers("author2"))
    assert board.status_code == 200
    assert str(escape(title.strip())) in board.text
    if body.strip():
        assert str(escape(body.strip())) in board.text


def _fuzz_client(client_with: Any) -> TestClient:
    """One app and workshop for all Hypothesis examples of one test run (the
    fixture is the same object for all of them)."""
    if not hasattr(client_with, "fuzz_client"):
        client = client_with(rate_cards_per_minute=100_000)
        with Session(client.app.state.engine, expire_on_commit=False) as s:
            client.fuzz_world = seed(s, SECRET)  # type: ignore[attr-defined]
        client_with.fuzz_client = client
    return client_with.fuzz_client  # type: ignore[no-any-return]


def test_nul_characters_are_refused_cleanly(client: TestClient, session: Session) -> None:
    w = seed(session, SECRET)
    quiet = TestClient(client.app, raise_server_exceptions=False)
    r = quiet.post(
        f"/api/v1/workshops/{w.code}/cards",
        json={"focus_area_id": w.fa_c.id, "kind": "tool", "title": "a\x00b"},
        headers=f.bearer(w.tokens["participant"]),
    )
    assert r.status_code in (201, 422), r.status_code


def test_out_of_range_ids_are_refused_cleanly(client_with: Any) -> None:
    client = client_with()
    quiet = TestClient(client.app, raise_server_exceptions=False)
    with Session(client.app.state.engine, expire_on_commit=False) as s:
        w = seed(s, SECRET)
    huge = 2**96
    pat = f.bearer(w.tokens["participant"])
    r = quiet.post(
        f"/api/v1/workshops/{w.code}/cards",
        json={"focus_area_id": huge, "kind": "tool", "title": "x"},
        headers=pat,
    )
    assert r.status_code in (404, 422), r.status_code
    r = quiet.patch(f"/api/v1/workshops/{w.code}/cards/{huge}", json={"title": "x"}, headers=pat)
    assert r.status_code in (404, 422), r.status_code
