"""An adversary, as a Hypothesis state machine, against the real JSON API, the
results and export API, the organizer's close/reopen routes, the pages and
the real websocket protocol, on the real database (SQLite, or PostgreSQL
with TEST_DATABASE_URL, as for the rest of the suite).

What it models. Each example is a fresh workshop, made through the API by
its organizer (bearer token) with three focus areas (A and B collecting, C in
draft; ratings on in B), private writing, blind voting and
anonymize-on-close drawn at random, and nine participants in five
affiliation groups: "OSCE Secretariat" (p0-p2), "Field operation" (p3-p5,
from two entries "Field operation: ..."), and "ODIHR" (p6), "External
partner: UNODC" (p7) and "Other" (p8) with one person each, so groups of 1
and of 3 and the fold of small groups into "Other" all occur. The
facilitator joined with the key of the facilitator link, the projector has
its key, a stranger nothing. Then, with the oracle watching: eight cards in
every example (four in B, three of them in a cluster; four in A: one
visible, one hidden by the facilitator, one withdrawn by its author, one
merged into the visible one) and up to four drawn ones; B may move on to
clustering or voting, where everyone but a drawn set of abstainers puts a
dot on a card of the cluster. Websockets are open for the projector (key in
the URL), the facilitator (bearer) and three participants (one joined
through the join page and connects with its cookie, two with bearer
tokens); each said ``{"type": "hello", "seq": null}``.

The rules then take random actions, allowed or not, each a real request:
writing cards (also ``{}`` and ``null`` bodies); PATCH with ``{}``, nulls,
text, kind, hide/restore and bad statuses; withdrawing; voting, unvoting and
rating (also ``{}``, nulls, out of range); the same card operations by the
card's author; moving and merging cards; making, renaming, merging and
deleting clusters; phase changes of any focus area to draft, collect,
cluster, vote, synthesize and closed (and bad bodies); revealing; private
writing on and off; closing (confirmed or not) and reopening the workshop;
reading cards, results, exports (md, csv, json), the board, console,
projector, report and "mine" pages. Actors are drawn from everyone, so
participants try staff actions and the projector and the stranger try
everything; card and cluster ids are the workshop's own in any state, those
of another workshop and ids that do not exist.

What the oracle checks, after every request:

1. Leaks: no response body and no websocket frame holds the marker of a card
   its receiver may not see at that moment (``adversary_model.may_see``: the
   intended rules, written out independently of the app), of another
   workshop's card, or of a card whose creation was refused; nor anybody's
   display name but the receiver's own. No card object in JSON carries an
   author, participant id, name or affiliation, or ``mine`` for someone
   else's card.
2. The gate: an operation on a card the caller may not see answers exactly
   like the same request with an id that does not exist (same status, same
   body) and changes nothing. PATCH ``{}`` (or only nulls) changes nothing,
   and on one's own card answers 200 with the same ``version``. A successful
   PATCH changes text only for the author and status only for staff; staff
   and organizer routes succeed only for their roles.
3. Disclosure control in ``GET .../results``, read by whoever acted and, after
   every change of the data, by the facilitator: every group named in
   ``groups_shown`` has at least 3 distinct voters in that focus area (true
   voters, remembered from before anonymization), "Other" too, and the
   shares of a cluster add up exactly to its dots (nothing suppressed can be
   computed as total minus shown); totals and shares reach participants only
   once visible (``totals_visible``).
4. Totals: dots and voters per card, per cluster and the turnout equal the
   database (dots on visible cards).
5. A refused answer (4xx) changes nothing: cards (text, status, version,
   cluster), clusters, votes, ratings, focus areas' phases and the workshop's
   flags and ``last_seq``, compared before and after. No answer is a 5xx.

Websocket frames come from the real sockets (TestClient's, served by
app/web/ws.py and the hub). After each request that moved the workshop's
``seq`` the test waits until every board and console socket has a frame of
that seq and the hub is idle (no render pending, no frame queued,
``frames_sent`` equal to the frames received, twice in a row), so each frame
is checked against the state it was rendered from: no timing races. The
background preparation of PDF/DOCX exports on closing is switched off here.

CI runs 40 derandomized examples of up to 40 steps: 45-60 s on SQLite, 70-90 s
on PostgreSQL on two cores; a failure adds at most 120 s of shrinking.

Run it longer::

    ADVERSARY_EXAMPLES=500 ADVERSARY_STEPS=60 ADVERSARY_RANDOM=1 \\
        .venv/bin/pytest tests/security/test_adversary.py -p no:cacheprovider

``ADVERSARY_RANDOM=1`` draws new examples each run (and keeps failures in
Hypothesis' example database); ``ADVERSARY_ALL_BUGS=1`` reports every
distinct failure; ``ADVERSARY_SHRINK_SECONDS`` changes the shrink cap;
``ADVERSARY_IGNORE=GateBroken,Leak,...`` counts failures of those kinds
instead of raising (with ``-s``: to look past a known bug);
``ADVERSARY_STATS=1`` prints how often each route answered what.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import time
from asyncio import CancelledError
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

import anyio
import httpx
import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.internal.conjecture import engine as hypothesis_engine
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    initialize,
    multiple,
    rule,
    run_state_machine_as_test,
)
from sqlalchemy.engine import Engine
from sqlmodel import Session

from app.db import make_engine, read_engine
from app.main import create_app
from app.models import CARD_KINDS
from tests import factories as f
from tests.conftest import fresh_database

from .adversary_model import (
    MARK_RE,
    STAFF,
    Marks,
    Snapshot,
    Viewer,
    check_card_objects,
    check_results,
    load,
    may_see,
    new_marker,
    new_name,
    scan,
    workshop_id,
)
from .conftest import make_settings

EXAMPLES = int(os.environ.get("ADVERSARY_EXAMPLES", "40"))
STEPS = int(os.environ.get("ADVERSARY_STEPS", "40"))
RANDOM = os.environ.get("ADVERSARY_RANDOM") == "1"
ALL_BUGS = os.environ.get("ADVERSARY_ALL_BUGS") == "1"
SHRINK_SECONDS = int(os.environ.get("ADVERSARY_SHRINK_SECONDS", "120"))
# Debugging aids: failures of these kinds are counted and printed, not raised
# (e.g. ADVERSARY_IGNORE=GateBroken,RefusedButChanged to look for leaks
# beyond a known gate bug); ADVERSARY_STATS=1 prints how often each route
# answered what (run pytest with -s).
IGNORE = set(filter(None, os.environ.get("ADVERSARY_IGNORE", "").split(",")))
SHOW_STATS = os.environ.get("ADVERSARY_STATS") == "1"
IGNORED: dict[str, list[str]] = defaultdict(list)
STATS: Counter[str] = Counter()

NONEXISTENT = 999_999_999
ORIGIN = "http://testserver"
HELLO = '{"type": "hello", "seq": null}'
SEQ_RE = re.compile(r'data-seq="(\d+)"')

AFFILIATIONS = [
    "OSCE Secretariat",
    "Field operation: OSCE Mission to Serbia",
    "Field operation: OSCE Mission to Skopje",
    "ODIHR",
    "External partner: UNODC",
    "Other",
]
PEOPLE = {
    "p0": "OSCE Secretariat",
    "p1": "OSCE Secretariat",
    "p2": "OSCE Secretariat",
    "p3": "Field operation: OSCE Mission to Serbia",
    "p4": "Field operation: OSCE Mission to Serbia",
    "p5": "Field operation: OSCE Mission to Skopje",
    "p6": "ODIHR",
    "p7": "External partner: UNODC",
    "p8": "Other",
}
PARTICIPANTS = list(PEOPLE)
ACTORS = [*PARTICIPANTS, "fac", "org", "proj", "anon"]
SOCKETS = {"p0": "cookie", "p6": "bearer", "p3": "bearer", "fac": "bearer", "proj": "key"}
COOKIE_JOINS = ("p0",)  # joins through the join page; its socket uses the cookie
PHASES = ["draft", "collect", "cluster", "vote", "synthesize", "closed"]

RATE_LIMITS = {
    f"rate_{name}": 1_000_000
    for name in (
        "cards_per_minute",
        "votes_per_minute",
        "exports_per_minute",
        "joins_per_ip_per_minute",
        "failed_joins_per_ip_per_minute",
        "failed_joins_per_minute",
        "failed_keys_per_code_per_minute",
        "logins_per_minute",
    )
}


class Leak(AssertionError):
    """Something reached someone who may not see it."""


class GateBroken(AssertionError):
    """A card operation told a hidden card from a missing one, or acted on it."""


class Disclosure(AssertionError):
    """A breakdown lets a group under k, or a suppressed value, be computed."""


class RefusedButChanged(AssertionError):
    """A 4xx answer, yet the database changed."""


class WrongAnswer(AssertionError):
    """A 5xx, a success for a caller without the right, or a no-op that changed things."""


class Realtime(AssertionError):
    """The sockets did not catch up, or the hub dropped or failed a render."""


# -- the environment: one app, database and organizer per module ----------------------------


@dataclass
class Env:
    client: TestClient
    engine: Engine  # read-only, for the snapshots
    org_token: str
    decoy_card: int = 0
    decoy_cluster: int = 0
    decoy_fa: int = 0


def _ok(r: httpx.Response, *codes: int) -> httpx.Response:
    assert r.status_code in codes, f"{r.request.method} {r.request.url}: {r.status_code} {r.text}"
    return r


def _make_decoy(env: Env) -> None:
    """Another workshop of the same organizer, with a private card, a hidden
    card and a cluster: its ids are attack targets, its markers must never
    reach anyone in the workshops under test."""
    c = env.client
    org = {"Authorization": f"Bearer {env.org_token}"}
    body = {
        "title": "Decoy",
        "settings": {"private_writing": True},
        "focus_areas": [{"title": "Decoy area"}],
    }
    made = _ok(c.post("/api/v1/workshops", json=body, headers=org), 201).json()
    code, fa = made["code"], made["focus_areas"][0]["id"]
    fkey = parse_qs(urlsplit(made["facilitator_url"]).query)["key"][0]
    base = f"/api/v1/workshops/{code}"
    join = {"display_name": new_name()[1], "affiliation": "ODIHR"}
    author = _ok(c.post(f"{base}/participants", json=join), 201).json()["token"]
    fac_join = {"display_name": new_name()[1], "facilitator_key": fkey}
    fac = _ok(c.post(f"{base}/participants", json=fac_join), 201).json()["token"]
    fac_h = {"Authorization": f"Bearer {fac}"}
    _ok(c.put(f"{base}/focus-areas/{fa}/phase", json={"phase": "collect"}, headers=fac_h), 200)
    ids = []
    for _ in range(2):
        mark = new_marker()[1]
        card = {"focus_area_id": fa, "kind": "tool", "title": f"{mark} decoy", "body": mark}
        r = c.post(f"{base}/cards", json=card, headers={"Authorization": f"Bearer {author}"})
        ids.append(_ok(r, 201).json()["id"])
    _ok(c.patch(f"{base}/cards/{ids[1]}", json={"status": "hidden"}, headers=fac_h), 200)
    cl = {"focus_area_id": fa, "title": "Decoy cluster", "card_ids": [ids[0]]}
    env.decoy_cluster = _ok(c.post(f"{base}/clusters", json=cl, headers=fac_h), 201).json()["id"]
    env.decoy_card, env.decoy_fa = ids[0], fa
    c.cookies.clear()


@pytest.fixture(scope="module")
def adversary_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    data_dir = tmp_path_factory.mktemp("adversary")
    with fresh_database(data_dir) as url:
        s = make_settings(url, data_dir, coalesce_ms=0, **RATE_LIMITS)
        engine = make_engine(s)
        with Session(engine) as session:
            f.organizer(session, "Owner")
        app = create_app(s)
        # Closing a workshop renders its PDF and DOCX in a background thread,
        # for the download that follows; here it would only compete for the CPU.
        app.state.exports.prepare = lambda workshop_id: None
        with TestClient(app, raise_server_exceptions=False) as client:
            login = {"name": "Owner", "password": f.PASSWORD}
            token = _ok(client.post("/api/v1/login", json=login), 200).json()["token"]
            env = Env(client, read_engine(engine), token)
            _make_decoy(env)
            yield env
        engine.dispose()


# -- references the rules pass around --------------------------------------------------------


@dataclass(frozen=True)
class CardRef:
    label: str
    id: int

    def __repr__(self) -> str:
        return f"CardRef({self.label!r}, id={self.id})"


@dataclass(frozen=True)
class ClusterRef:
    label: str
    id: int

    def __repr__(self) -> str:
        return f"ClusterRef({self.label!r}, id={self.id})"


@dataclass
class Sock:
    actor: str
    session: Any  # starlette.testclient.WebSocketTestSession
    last_seq: int = -1
    frames: int = 0


def _messages(session: Any) -> list[dict[str, Any]]:
    """Everything the app has sent to this TestClient socket so far, without
    waiting (runs in the app's event loop). Reads the session's receive
    stream directly: its public receive() blocks and has no timeout."""
    out: list[dict[str, Any]] = []
    while True:
        try:
            out.append(session._send_rx.receive_nowait())
        except (anyio.WouldBlock, anyio.EndOfStream, anyio.ClosedResourceError):
            return out


async def _hub_stats(hub: Any) -> dict[str, Any]:
    # Let a writer that has taken a frame off its queue finish sending it.
    for _ in range(20):
        await anyio.sleep(0)
    return hub.stats()  # type: ignore[no-any-return]


def _body(r: httpx.Response) -> Any:
    try:
        return r.json()
    except ValueError:
        return r.text


# Ids an adversary holds besides the cards it saw written: stale ones (a card
# since withdrawn, hidden or merged), one it should not know (unrevealed: the
# first card of another author whose text is private now), one of another
# workshop and one that never existed. A third of the card choices.
SPECIAL_CARDS = st.sampled_from(["withdrawn", "hidden", "unrevealed", "merged", "decoy", "missing"])
CLUSTER_TARGETS = st.sampled_from(["seeded", "stale", "decoy", "missing"])
AREAS = st.sampled_from(["A", "B", "C", "missing", "decoy"])
ANYONE = st.sampled_from(ACTORS)
STAFFISH = st.sampled_from(["fac", "org", "p0", "fac", "org", "p6", "proj", "anon"])
# Card operations and their bodies ("MARK" becomes the card's own marker).
PATCHES = {
    "PATCH hide": '{"status": "hidden"}',
    "PATCH {}": "{}",
    "PATCH nulls": '{"title": null, "body": null, "context": null, "kind": null, "status": null}',
    "PATCH status null": '{"status": null}',
    "PATCH title": '{"title": "MARK edited title"}',
    "PATCH body": '{"body": "MARK edited body"}',
    "PATCH context": '{"context": {"where": "MARK edited where"}}',
    "PATCH kind": '{"kind": "lesson"}',
    "PATCH restore": '{"status": "visible"}',
    "PATCH withdrawn": '{"status": "withdrawn"}',
    "PATCH hide and title": '{"status": "hidden", "title": "MARK hidden title"}',
}
NOOP_PATCHES = ("PATCH {}", "PATCH nulls", "PATCH status null")
RATINGS: dict[str, Any] = {
    "rate": {"impact": 4, "feasibility": 2},
    "rate {}": {},
    "rate nulls": {"impact": None, "feasibility": None},
    "rate 0 and 6": {"impact": 0, "feasibility": 6},
    "rate strings": {"impact": "4", "feasibility": "2"},
}
CARD_OPS = ["PATCH {}", "PATCH", "DELETE", "vote", "rate", "unvote"]
DRIVE_OPS = [
    *(f"phase {p}" for p in PHASES),
    "reveal",
    "private on",
    "private off",
    "close",
    "reopen",
    "close unconfirmed",
    "phase bogus",
    "phase {}",
    "phase null",
]
# Written in every example: (author, focus area, in the seeded cluster).
BASE_CARDS = [
    ("p0", "B", True),
    ("p3", "B", True),
    ("p6", "B", True),
    ("p8", "B", False),
    ("p1", "A", False),
    ("p7", "A", False),  # hidden by the facilitator
    ("p2", "A", False),  # withdrawn by its author
    ("p4", "A", False),  # merged by the facilitator into p1's card
]
OBSERVERS = ("fac",)


class Adversary(RuleBasedStateMachine):
    env: Env  # set by the test

    cards = Bundle("cards")
    clusters = Bundle("clusters")

    def __init__(self) -> None:
        super().__init__()
        self.c = self.env.client
        portal = self.c.portal  # set while the TestClient is entered
        assert portal is not None
        self.portal = portal
        self.hub = self.c.app.state.realtime.hub  # type: ignore[attr-defined]
        self.marks = Marks()
        self.tokens: dict[str, str] = {}
        self.pids: dict[str, int] = {}
        self.sockets: list[Sock] = []
        self.owner_of_vote: dict[int, int] = {}
        self.card_marker: dict[int, str] = {}
        self.n_cards = 0
        self.n_clusters = 0
        self.seeded_cluster = NONEXISTENT
        self.snap: Snapshot | None = None
        self.wid = 0
        self.code = ""
        self.pkey = ""
        self.base = ""
        self.fa: dict[str, int] = {}
        self.hub_base: dict[str, Any] = {}
        self.received = 0
        self.observing = False
        self.cookie_of_participant = ("", "")
        self.projector_cookie = ("", "")

    # -- plumbing ---------------------------------------------------------------------------

    def viewer(self, actor: str) -> Viewer:
        kind = actor if actor in ("fac", "org", "proj", "anon") else "participant"
        return Viewer(actor, kind, self.pids.get(actor))

    def join_in_browser(self, join: dict[str, Any]) -> str:
        """Join through the join page, as a browser does: the answer sets the
        participant's cookie. Returns its value (the token)."""
        c = self.c
        c.cookies.clear()
        page = _ok(c.get(f"/join/{self.code}"), 200)
        found = re.search(r'name="csrf-token" content="([^"]+)"', page.text)
        assert found, "the join page has no CSRF token"
        form = {**join, "csrf_token": found.group(1)}
        r = _ok(c.post(f"/join/{self.code}", data=form, follow_redirects=False), 303)
        cookies = [(k, v) for k, v in r.cookies.items() if k != "lw_csrf"]
        assert len(cookies) == 1, f"joining set {r.cookies}"
        self.cookie_of_participant = cookies[0]
        c.cookies.clear()
        return cookies[0][1]

    def creds(self, actor: str) -> dict[str, str]:
        if actor == "org":
            return {"Authorization": f"Bearer {self.env.org_token}"}
        if actor == "proj":
            name, value = self.projector_cookie
            return {"Cookie": f"{name}={value}"}
        if actor in self.tokens:
            return {"Authorization": f"Bearer {self.tokens[actor]}"}
        return {}

    def card_id(self, ref: CardRef | str, actor: str = "") -> int:
        if isinstance(ref, CardRef):
            return ref.id
        if ref == "decoy":
            return self.env.decoy_card
        snap = self.snap
        assert snap is not None
        for cid in sorted(snap.cards):
            card = snap.cards[cid]
            if ref == "unrevealed":
                fa = snap.focus_areas[card.focus_area_id]
                private = fa.phase == "draft" or (snap.private_writing and fa.phase == "collect")
                if private and card.status == "visible" and card.author_id != self.pids.get(actor):
                    return cid
            elif card.status == ref:
                return cid
        return NONEXISTENT

    def cluster_id(self, ref: ClusterRef | str) -> int:
        if isinstance(ref, ClusterRef):
            return ref.id
        if ref == "stale":
            assert self.snap is not None
            gone = [c.id for c in self.snap.clusters.values() if c.status != "active"]
            return min(gone, default=NONEXISTENT)
        return {"seeded": self.seeded_cluster, "decoy": self.env.decoy_cluster}.get(
            ref, NONEXISTENT
        )

    def marker_for(self, cid: int) -> str:
        # Edits keep the card's own marker; an edit of a card of another
        # workshop or of a missing id gets a new one, which must never show.
        return self.card_marker.get(cid) or new_marker()[1]

    def call(
        self,
        actor: str,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        data: dict[str, Any] | None = None,
        params: dict[str, str] | None = None,
        send_json: bool = False,
    ) -> httpx.Response:
        """One request as ``actor``, with every generic check of the oracle."""
        before = self.snap
        assert before is not None
        self.c.cookies.clear()
        kwargs: dict[str, Any] = {"headers": self.creds(actor), "follow_redirects": False}
        if send_json:
            kwargs["json"] = json_body
        if data is not None:
            kwargs["data"] = data
        if params is not None:
            kwargs["params"] = params
        r = self.c.request(method, path, **kwargs)
        self.c.cookies.clear()
        after = load(self.env.engine, self.wid)
        for card in after.cards.values():
            if card.id not in self.card_marker:
                # A card just written: its marker is the first in its title.
                found = MARK_RE.search(card.title)
                if found:
                    self.marks.card_of[int(found.group(1))] = card.id
                    self.card_marker[card.id] = found.group(0)
        for v in after.votes.values():
            if v.participant_id is not None:
                self.owner_of_vote[v.id] = v.participant_id
        self.snap = after
        what = f"{actor}: {method} {path.replace(self.code, 'CODE')}"
        if send_json:
            what += f" {json.dumps(json_body)}"
        what += f" -> {r.status_code}"
        route = re.sub(r"/-?\d+", "/N", path.replace(self.code, "CODE"))
        STATS[f"{method} {route} -> {r.status_code}"] += 1
        if r.status_code >= 500:
            self.fail(WrongAnswer, f"{what}: {r.text[:500]}")
        viewer = self.viewer(actor)
        problems = scan(r.text, after, self.marks, viewer)
        if problems:
            self.fail(Leak, f"{what}\n" + "\n".join(problems))
        if r.headers.get("content-type", "").startswith("application/json") and r.content:
            problems = check_card_objects(r.json(), after, viewer)
            if problems:
                self.fail(Leak, f"{what}\n" + "\n".join(problems))
        if 400 <= r.status_code < 500:
            changed = before.diff(after)
            if changed:
                self.fail(RefusedButChanged, f"{what} {r.text[:300]}\n" + "\n".join(changed))
        if after.last_seq != before.last_seq and self.sockets:
            self.settle(what)
            if not self.observing and before.diff(after) != [
                f"last_seq: {before.last_seq!r} -> {after.last_seq!r}"
            ]:
                self.observe(what)
        return r

    def api(self, actor: str, method: str, path: str, body: Any = None, **kw: Any) -> Any:
        return self.call(
            actor, method, f"{self.base}{path}", json_body=body, send_json=body is not None, **kw
        )

    def settle(self, what: str, *, everyone: bool = False) -> None:
        """Read frames until every board and console socket (every socket
        with ``everyone``) has the workshop's current seq and the hub is idle,
        checking each frame against the state it was rendered from."""
        snap = self.snap
        assert snap is not None
        deadline = time.monotonic() + 30
        quiet = 0
        while True:
            for sock in self.sockets:
                for msg in self.portal.call(_messages, sock.session):
                    self.frame(sock, msg, snap, what)
            stats = self.portal.call(_hub_stats, self.hub)
            caught_up = all(
                s.last_seq >= snap.last_seq for s in self.sockets if everyone or s.actor != "proj"
            )
            idle = (
                caught_up
                and stats["pending_renders"] == 0
                and stats["queued_frames"] == 0
                and stats["frames_sent"] - self.hub_base["frames_sent"] == self.received
            )
            quiet = quiet + 1 if idle else 0
            if quiet >= 2:
                break
            if time.monotonic() > deadline:
                seqs = {s.actor: s.last_seq for s in self.sockets}
                raise Realtime(f"after {what}: sockets at {seqs}, seq {snap.last_seq}, {stats}")
            time.sleep(0.001)
        for key in ("render_errors", "closed_slow"):
            if stats[key] != self.hub_base[key]:
                raise Realtime(f"after {what}: hub {key} went up: {stats}")
        for s in self.sockets:
            if s.last_seq > snap.last_seq:
                raise Realtime(f"after {what}: {s.actor} got seq {s.last_seq} > {snap.last_seq}")

    def frame(self, sock: Sock, msg: dict[str, Any], snap: Snapshot, what: str) -> None:
        if msg.get("type") != "websocket.send":
            raise Realtime(f"after {what}: {sock.actor}'s socket got {msg}")
        self.received += 1
        sock.frames += 1
        text = msg.get("text") or (msg.get("bytes") or b"").decode()
        m = SEQ_RE.search(text)
        if m is None:
            raise Realtime(f"after {what}: a frame to {sock.actor} without data-seq: {text[:200]}")
        seq = int(m.group(1))
        if seq < sock.last_seq:
            raise Realtime(f"after {what}: {sock.actor} got seq {seq} after {sock.last_seq}")
        sock.last_seq = seq
        problems = scan(text, snap, self.marks, self.viewer(sock.actor))
        if problems:
            self.fail(Leak, f"websocket frame (seq {seq}) after {what}\n" + "\n".join(problems))

    def gated(
        self,
        actor: str,
        ids: list[int],
        send: Callable[[list[int]], httpx.Response],
        what: str,
        only: int | None = None,
    ) -> httpx.Response:
        """Send a card operation; if the caller may not see one of its cards,
        send it again with that id replaced by one that does not exist: the
        two answers must be the same."""
        before = self.snap
        assert before is not None
        r = send(ids)
        viewer = self.viewer(actor)
        for i, cid in enumerate(ids[:only]):
            if cid == NONEXISTENT or may_see(before, cid, viewer):
                continue
            control = send([NONEXISTENT if j == i else x for j, x in enumerate(ids)])
            if (r.status_code, _body(r)) != (control.status_code, _body(control)):
                card = before.cards.get(cid)
                state = "of another workshop" if card is None else f"{card.status}"
                if card is not None:
                    fa = before.focus_areas[card.focus_area_id]
                    state += (
                        f", phase {fa.phase}, private writing "
                        f"{'on' if before.private_writing else 'off'}, author {card.author_id}"
                    )
                self.fail(
                    GateBroken,
                    f"{actor}: {what} on card {cid} ({state}), which {actor} may not see, "
                    f"answers {r.status_code} {r.text[:300]!r}; with an id that does not exist: "
                    f"{control.status_code} {control.text[:300]!r}",
                )
            break
        return r

    def fail(self, kind: type[AssertionError], message: str) -> None:
        if kind.__name__ in IGNORE:
            IGNORED[kind.__name__].append(message)
            return
        raise kind(message)

    def only_for(self, r: httpx.Response, actor: str, roles: frozenset[str], what: str) -> None:
        if r.status_code < 400 and actor not in roles:
            self.fail(WrongAnswer, f"{actor}: {what} succeeded ({r.status_code}) for a non-{roles}")

    # -- the workshop -----------------------------------------------------------------------

    @initialize(
        target=cards,
        stage=st.sampled_from(["vote", "collect", "vote", "cluster"]),
        private=st.booleans(),
        blind=st.booleans(),
        anonymize=st.booleans(),
        seed=st.lists(
            st.tuples(st.sampled_from(PARTICIPANTS), st.sampled_from("BA"), st.booleans()),
            max_size=4,
        ),
        # With stage "vote", everybody else puts a dot on a card of the
        # seeded cluster.
        abstain=st.sets(st.sampled_from(PARTICIPANTS), max_size=5),
    )
    def workshop(
        self,
        stage: str,
        private: bool,
        blind: bool,
        anonymize: bool,
        seed: list[tuple[str, str, bool]],
        abstain: set[str],
    ) -> Any:
        stats = self.portal.call(_hub_stats, self.hub)
        assert not stats["sockets"], f"sockets left over: {stats}"
        self.hub_base = stats
        # The fixed part, the same in every example, goes through the API
        # without the oracle (no socket is open yet): the organizer makes the
        # workshop, sets the affiliations and turns ratings on in B, people
        # join (the facilitator with the key of the facilitator link), the
        # facilitator opens A and B.
        c = self.c
        c.cookies.clear()
        org = self.creds("org")
        body = {
            "title": "Adversary",
            "settings": {
                "private_writing": private,
                "blind_voting": blind,
                "anonymize_on_close": anonymize,
            },
            "focus_areas": [{"title": f"Area {a}"} for a in "ABC"],
        }
        made = _ok(c.post("/api/v1/workshops", json=body, headers=org), 201).json()
        self.code = made["code"]
        self.wid = workshop_id(self.env.engine, self.code)
        self.base = f"/api/v1/workshops/{self.code}"
        self.pkey = parse_qs(urlsplit(made["projector_url"]).query)["key"][0]
        fkey = parse_qs(urlsplit(made["facilitator_url"]).query)["key"][0]
        ids = [fa["id"] for fa in made["focus_areas"]]
        self.fa = dict(zip("ABC", ids, strict=True))
        self.fa.update(missing=NONEXISTENT, decoy=self.env.decoy_fa)
        form = f"/organizer/w/{self.code}"
        affiliations = {"affiliations": "\n".join(AFFILIATIONS)}
        no = {"follow_redirects": False}
        _ok(c.post(f"{form}/affiliations", data=affiliations, headers=org, **no), 303)
        ratings = {"title": "Area B", "kinds": CARD_KINDS, "ratings_enabled": "1"}
        _ok(c.post(f"{form}/fa/{self.fa['B']}", data=ratings, headers=org, **no), 303)
        for actor in [*PARTICIPANTS, "fac"]:
            n, name = new_name()
            self.marks.names[n] = actor
            join: dict[str, Any] = {"display_name": name}
            if actor == "fac":
                join["facilitator_key"] = fkey
            else:
                join["affiliation"] = PEOPLE[actor]
            if actor in COOKIE_JOINS:
                self.tokens[actor] = self.join_in_browser(join)
                me = c.get(f"{self.base}/me", headers=self.creds(actor))
                self.pids[actor] = _ok(me, 200).json()["participant_id"]
                continue
            joined = _ok(c.post(f"{self.base}/participants", json=join), 201).json()
            self.tokens[actor], self.pids[actor] = joined["token"], joined["participant_id"]
        # The projector link sets the projector's cookie, as in a browser.
        c.cookies.clear()
        shown = c.get(f"/w/{self.code}/projector", params={"key": self.pkey})
        self.projector_cookie = next(iter(_ok(shown, 200).cookies.items()), ("", ""))
        for area in "AB":
            path = f"{self.base}/focus-areas/{self.fa[area]}/phase"
            _ok(c.put(path, json={"phase": "collect"}, headers=self.creds("fac")), 200)
        c.cookies.clear()
        self.snap = load(self.env.engine, self.wid)
        self.open_sockets()

        # The rest goes through the API, like every rule: the same cards in
        # every example (a card in every status), then the drawn ones.
        refs: list[CardRef] = []
        clustered: list[int] = []
        self.observing = True  # nothing to count yet: no observer reads until the votes
        for author, area, in_cluster in [*BASE_CARDS, *seed]:
            ref = self._write(author, area, "full")
            assert ref is not None, f"{author} could not write a card in {area}"
            refs.append(ref)
            if area == "B" and in_cluster:
                clustered.append(ref.id)
        _ok(self.api("fac", "PATCH", f"/cards/{refs[5].id}", {"status": "hidden"}), 200)
        _ok(self.api("p2", "DELETE", f"/cards/{refs[6].id}"), 204)
        _ok(self.api("fac", "POST", f"/cards/{refs[7].id}/merge", {"into": refs[4].id}), 200)
        phase = f"/focus-areas/{self.fa['B']}/phase"
        if stage in ("cluster", "vote"):
            _ok(self.api("fac", "PUT", phase, {"phase": "cluster"}), 200)
            cl = {"focus_area_id": self.fa["B"], "title": "Seeded", "card_ids": clustered}
            self.seeded_cluster = _ok(self.api("fac", "POST", "/clusters", cl), 201).json()["id"]
        self.observing = False
        if stage == "vote":
            _ok(self.api("fac", "PUT", phase, {"phase": "vote"}), 200)
            for i, voter in enumerate(PARTICIPANTS):
                if voter not in abstain:
                    card = clustered[i % len(clustered)]
                    _ok(self.api(voter, "POST", f"/cards/{card}/votes"), 200)
        return multiple(*refs)

    def open_sockets(self) -> None:
        url = f"/ws/workshops/{self.code}"
        for actor, how in SOCKETS.items():
            headers = {"Origin": ORIGIN}
            path = url
            if how == "cookie":
                name, value = self.cookie_of_participant
                headers["Cookie"] = f"{name}={value}"
            elif how == "bearer":
                headers["Authorization"] = f"Bearer {self.tokens[actor]}"
            else:
                path = f"{url}?key={self.pkey}"
            self.c.cookies.clear()
            session = self.c.websocket_connect(path, headers=headers).__enter__()
            self.sockets.append(Sock(actor, session))
            session.send_text(HELLO)
        self.settle("connecting and saying hello", everyone=True)

    def teardown(self) -> None:
        if not self.sockets:
            return
        for s in self.sockets:
            with contextlib.suppress(Exception):
                s.session.send({"type": "websocket.disconnect", "code": 1000})
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            stats = self.portal.call(_hub_stats, self.hub)
            if not stats["sockets"] and not self.c.app.state.ws_counts:  # type: ignore[attr-defined]
                break
            time.sleep(0.002)
        for s in self.sockets:
            with contextlib.suppress(CancelledError, Exception):
                s.session.__exit__(None, None, None)
        self.sockets = []

    # -- cards ------------------------------------------------------------------------------

    def _write(self, actor: str, area: str, shape: str) -> CardRef | None:
        n, mark = new_marker()
        fa = self.fa[area]
        bodies: dict[str, Any] = {
            "full": {
                "focus_area_id": fa,
                "kind": "tool",
                "title": f"{mark} title",
                "body": f"{mark} body",
                "context": {
                    "dimensions": ["human"],
                    "where": f"{mark} where",
                    "partners": [f"{mark} partner"],
                    "evidence": f"{mark} evidence",
                    "human_rights": f"{mark} rights",
                },
            },
            "title_only": {"focus_area_id": fa, "kind": "lesson", "title": f"{mark} only"},
            "empty": {},
            "nulls": {"focus_area_id": None, "kind": None, "title": None, "body": None},
            "kind_null": {"focus_area_id": fa, "kind": None, "title": f"{mark} t"},
        }
        r = self.api(actor, "POST", "/cards", bodies[shape])
        if r.status_code != 201:
            return None
        cid = r.json()["id"]
        assert self.snap is not None
        card = self.snap.cards.get(cid)
        if card is None or card.author_id != self.pids.get(actor):
            self.fail(WrongAnswer, f"{actor} wrote card {cid}, the database says {card}")
        self.n_cards += 1
        return CardRef(f"c{self.n_cards}", cid)

    @rule(
        target=cards,
        actor=ANYONE,
        area=AREAS,
        shape=st.sampled_from(["full", "title_only", "empty", "nulls", "kind_null"]),
    )
    def write(self, actor: str, area: str, shape: str) -> Any:
        ref = self._write(actor, area, shape)
        return multiple() if ref is None else ref

    @rule(
        actor=ANYONE,
        card=st.one_of(cards, cards, SPECIAL_CARDS),
        op=st.sampled_from(CARD_OPS),
        patch=st.sampled_from(list(PATCHES)),
        rating=st.sampled_from(list(RATINGS)),
    )
    def card_op(self, actor: str, card: CardRef | str, op: str, patch: str, rating: str) -> None:
        """What a participant's device can do to a card (anyone may try)."""
        self._card_op(actor, self.card_id(card, actor), op, patch, rating)

    @rule(
        card=st.one_of(cards, cards, st.sampled_from(["merged", "hidden", "withdrawn"])),
        op=st.sampled_from(CARD_OPS),
        patch=st.sampled_from(list(PATCHES)),
        rating=st.sampled_from(list(RATINGS)),
    )
    def authors_op(self, card: CardRef | str, op: str, patch: str, rating: str) -> None:
        """The same, by the card's author (after a merge, a hide, a close...)."""
        assert self.snap is not None
        cid = self.card_id(card)
        row = self.snap.cards.get(cid)
        author = next((a for a, pid in self.pids.items() if row and pid == row.author_id), "p0")
        self._card_op(author, cid, op, patch, rating)

    def _card_op(self, actor: str, cid: int, op: str, patch: str, rating: str) -> None:
        if op == "PATCH {}":
            self.patch(actor, cid, op)
        elif op == "PATCH":
            self.patch(actor, cid, patch)
        elif op == "DELETE":
            self.withdraw(actor, cid)
        elif op in ("vote", "unvote"):
            method = "POST" if op == "vote" else "DELETE"
            self.gated(
                actor,
                [cid],
                lambda ids: self.api(actor, method, f"/cards/{ids[0]}/votes"),
                f"{method} votes",
            )
        else:
            body = RATINGS[rating]
            self.gated(
                actor,
                [cid],
                lambda ids: self.api(actor, "PUT", f"/cards/{ids[0]}/rating", body),
                f"PUT rating {json.dumps(body)}",
            )

    def patch(self, actor: str, cid: int, op: str) -> None:
        mark = self.marker_for(cid)
        body = json.loads(PATCHES[op].replace("MARK", mark))
        before = self.snap
        assert before is not None
        r = self.gated(
            actor,
            [cid],
            lambda ids: self.api(actor, "PATCH", f"/cards/{ids[0]}", body),
            f"PATCH {json.dumps(body)}",
        )
        after = self.snap
        assert after is not None
        b, a = before.cards.get(cid), after.cards.get(cid)
        viewer = self.viewer(actor)
        what = f"{actor}: PATCH card {cid} {json.dumps(body)} -> {r.status_code}"
        own = b is not None and b.author_id is not None and b.author_id == viewer.pid
        fresh = b is not None and b.status != "withdrawn"
        if op == "PATCH {}" and own and fresh and r.status_code != 200:
            self.fail(WrongAnswer, f"{what}: PATCH {{}} on one's own card must answer 200")
        if b is None or a is None or r.status_code >= 400:
            return
        if op in NOOP_PATCHES and a != b:
            self.fail(
                WrongAnswer, f"{what}: a PATCH that asks for nothing changed the card: {b} -> {a}"
            )
        content = ("kind", "title", "body", "context")
        if not own and any(getattr(a, k) != getattr(b, k) for k in content):
            self.fail(WrongAnswer, f"{what}: a non-author changed the card's text: {b} -> {a}")
        if not viewer.staff and a.status != b.status:
            self.fail(WrongAnswer, f"{what}: a non-staff caller changed the status: {b} -> {a}")

    def withdraw(self, actor: str, cid: int) -> None:
        before = self.snap
        assert before is not None
        r = self.gated(
            actor, [cid], lambda ids: self.api(actor, "DELETE", f"/cards/{ids[0]}"), "DELETE"
        )
        b = before.cards.get(cid)
        if r.status_code < 400 and (b is None or b.author_id != self.pids.get(actor)):
            self.fail(WrongAnswer, f"{actor}: DELETE card {cid} -> {r.status_code}, not the author")

    # -- staff: clusters, moves, merges -----------------------------------------------------

    @rule(
        actor=STAFFISH,
        op=st.sampled_from(["move", "merge", "merge {}", "merge null"]),
        card=st.one_of(cards, cards, SPECIAL_CARDS),
        into=st.one_of(cards, cards, SPECIAL_CARDS),
        dest=st.one_of(clusters, st.sampled_from(["none", "seeded", "missing", "decoy", "{}"])),
    )
    def arrange(
        self,
        actor: str,
        op: str,
        card: CardRef | str,
        into: CardRef | str,
        dest: ClusterRef | str,
    ) -> None:
        """Moving a card to a cluster, merging a card into another."""
        ids = [self.card_id(card, actor), self.card_id(into, actor)]
        if op == "move":
            if dest == "{}":
                body: dict[str, Any] = {}
            else:
                body = {"cluster_id": None if dest == "none" else self.cluster_id(dest)}
            r = self.gated(
                actor,
                ids[:1],
                lambda ids: self.api(actor, "PUT", f"/cards/{ids[0]}/cluster", body),
                f"PUT cluster {json.dumps(body)}",
            )
        else:

            def send(ids: list[int]) -> httpx.Response:
                body = {"merge": {"into": ids[1]}, "merge {}": {}, "merge null": {"into": None}}
                return self.api(actor, "POST", f"/cards/{ids[0]}/merge", body[op])

            r = self.gated(actor, ids, send, op, only=None if op == "merge" else 1)
        self.only_for(r, actor, STAFF, f"{op} card {ids[0]}")

    @rule(
        target=clusters,
        actor=STAFFISH,
        area=AREAS,
        members=st.lists(st.one_of(cards, cards, SPECIAL_CARDS), max_size=3),
        shape=st.sampled_from(["ok", "empty", "nulls"]),
    )
    def create_cluster(
        self, actor: str, area: str, members: list[CardRef | str], shape: str
    ) -> Any:
        ids = [self.card_id(m, actor) for m in members]

        def send(ids: list[int]) -> httpx.Response:
            body = {
                "ok": {"focus_area_id": self.fa[area], "title": "A cluster", "card_ids": ids},
                "empty": {},
                "nulls": {"focus_area_id": None, "title": None, "card_ids": None},
            }[shape]
            return self.api(actor, "POST", "/clusters", body)

        r = self.gated(
            actor, ids, send, f"create cluster ({shape})", only=None if shape == "ok" else 0
        )
        self.only_for(r, actor, STAFF, "creating a cluster")
        if r.status_code != 201:
            return multiple()
        self.n_clusters += 1
        return ClusterRef(f"k{self.n_clusters}", r.json()["id"])

    @rule(
        actor=STAFFISH,
        op=st.sampled_from(
            ["rename", "synthesis", "empty", "nulls", "position", "flag", "delete", "merge"]
        ),
        cluster=st.one_of(clusters, CLUSTER_TARGETS),
        into=st.one_of(clusters, CLUSTER_TARGETS),
    )
    def cluster_op(
        self, actor: str, op: str, cluster: ClusterRef | str, into: ClusterRef | str
    ) -> None:
        path = f"/clusters/{self.cluster_id(cluster)}"
        if op == "delete":
            r = self.api(actor, "DELETE", path)
        elif op == "merge":
            r = self.api(actor, "POST", f"{path}/merge", {"into": self.cluster_id(into)})
        else:
            body = {
                "rename": {"title": "Renamed cluster"},
                "synthesis": {"synthesis": "What the cluster says"},
                "empty": {},
                "nulls": {"title": None, "synthesis": None, "position": None},
                "position": {"position": 0},
                "flag": {"is_recommendation": True},
            }[op]
            r = self.api(actor, "PATCH", path, body)
        self.only_for(r, actor, STAFF, f"cluster {op}")

    # -- staff: phases, reveal, private writing, close and reopen ----------------------------

    @rule(actor=STAFFISH, op=st.sampled_from(DRIVE_OPS), area=AREAS)
    def drive(self, actor: str, op: str, area: str) -> None:
        fa = self.fa[area]
        if op.startswith("phase "):
            arg = op.removeprefix("phase ")
            body: dict[str, Any] = {} if arg == "{}" else {"phase": None if arg == "null" else arg}
            r = self.api(actor, "PUT", f"/focus-areas/{fa}/phase", body)
            self.only_for(r, actor, STAFF, "changing a phase")
        elif op == "reveal":
            r = self.api(actor, "POST", f"/focus-areas/{fa}/reveal")
            self.only_for(r, actor, STAFF, "revealing totals")
        elif op.startswith("private"):
            data = {"on": "1" if op == "private on" else "0"}
            r = self.call(actor, "POST", f"/w/{self.code}/private-writing", data=data)
            self.only_for(r, actor, STAFF, "switching private writing")
        else:
            # Closing asks the organizer to confirm (anonymize-on-close erases).
            data = {"confirm_close": "yes"} if op == "close" else {}
            path = f"/organizer/w/{self.code}/{op.split()[0]}"
            r = self.call(actor, "POST", path, data=data)
            self.only_for(r, actor, frozenset({"org"}), f"{op} the workshop")

    # -- reading ----------------------------------------------------------------------------

    @rule(
        actor=ANYONE,
        what=st.sampled_from(["results", "cards", "page", "export", "mine", "me", "workshop"]),
        area=st.one_of(st.none(), AREAS),
        fmt=st.sampled_from(["md", "csv", "json"]),
    )
    def read(self, actor: str, what: str, area: str | None, fmt: str) -> None:
        if what == "results":
            self.read_results(actor)
        elif what == "cards":
            params = None if area is None else {"focus_area_id": str(self.fa[area])}
            self.api(actor, "GET", "/cards", params=params)
        elif what == "export":
            r = self.api(actor, "GET", "/export", params={"format": fmt})
            self.only_for(r, actor, STAFF, "exporting")
        elif what == "page":
            path, params = {
                "fac": (f"/w/{self.code}/console", None),
                "org": (f"/w/{self.code}/report", None),
                "proj": (f"/w/{self.code}/projector", {"key": self.pkey}),
            }.get(actor, (f"/w/{self.code}", None))
            self.call(actor, "GET", path, params=params)
        elif what == "mine":
            self.call(actor, "GET", f"/w/{self.code}/mine/{self.fa[area or 'A']}")
        elif what == "me":
            self.api(actor, "GET", "/me")
        else:
            self.api(actor, "GET", "")

    def read_results(self, actor: str, after: str = "") -> None:
        r = self.api(actor, "GET", "/results")
        if r.status_code != 200:
            if actor in STAFF or actor in PEOPLE:
                self.fail(WrongAnswer, f"{actor}: GET /results -> {r.status_code} {r.text[:200]}")
            return
        if actor not in STAFF and actor not in PEOPLE:
            self.fail(WrongAnswer, f"{actor}: GET /results -> 200 without joining")
        assert self.snap is not None
        problems = check_results(r.json(), self.snap, self.viewer(actor), self.owner_of_vote)
        if problems:
            context = f" (after {after})" if after else ""
            self.fail(Disclosure, f"{actor}: GET /results{context}\n" + "\n".join(problems))

    def observe(self, after: str) -> None:
        """After every change, the results as the facilitator (totals always)
        and as a participant (totals once visible) are checked too."""
        self.observing = True
        try:
            for actor in OBSERVERS:
                self.read_results(actor, after)
        finally:
            self.observing = False


@pytest.mark.timeout(900)  # the suite's 120 s is short when a failure has to be shrunk
def test_adversary(adversary_env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    # Hypothesis shrinks for up to five minutes; an example here costs a
    # workshop and five sockets, so cap it (the failure message names the
    # request and the rule it broke, the steps before it are context).
    monkeypatch.setattr(hypothesis_engine, "MAX_SHRINKING_SECONDS", SHRINK_SECONDS)
    machine = type("Adversary", (Adversary,), {"env": adversary_env})
    try:
        run_state_machine_as_test(
            machine,
            settings=settings(
                max_examples=EXAMPLES,
                stateful_step_count=STEPS,
                deadline=None,
                derandomize=not RANDOM,
                database=settings().database if RANDOM else None,
                report_multiple_bugs=ALL_BUGS,
                suppress_health_check=list(HealthCheck),
            ),
        )
    finally:
        if SHOW_STATS:
            for line, n in sorted(STATS.items()):
                print(f"stat {n} {line}")
        for kind, messages in sorted(IGNORED.items()):
            print(f"\n{len(messages)} ignored {kind} failures, for example:")
            seen: dict[str, str] = {}
            for m in messages:
                seen.setdefault(re.sub(r"\d+", "N", m.splitlines()[0]), m)
            for m in list(seen.values())[:12]:
                print("  ", " | ".join(m.splitlines()[:2])[:500])
