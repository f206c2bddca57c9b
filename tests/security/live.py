"""The real server in a subprocess (``lessons serve`` on a free port, its own
SQLite data directory; tests/support/live_server.py starts it) and a scripted
workshop run against it that records everything each role receives: HTTP
bodies, websocket frames, export files.

20 participants with names and affiliations nobody would write by accident
join, keep a websocket open, write cards (private writing on), vote, rate;
the facilitator clusters, merges, hides, reveals and synthesizes; the
organizer exports every format. test_capture.py then looks for identities
where they must not be; test_logs.py reads the server's log."""

from __future__ import annotations

import asyncio
import io
import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from websockets.asyncio.client import ClientConnection, connect
from websockets.typing import Origin

from tests.factories import cookie_names
from tests.support.live_server import KEEPALIVE, ORGANIZER, ServerProcess

SECRET = "live-secret-" + "5e1f0c2a9b7d" * 4
PASSWORD = "organizer password for the live tests"
TEMPLATE = "osce-organized-crime-2007"
FORMATS = ("md", "csv", "json", "docx", "xlsx", "pdf")

FIRST = [
    "Zorblax",
    "Quillomar",
    "Vexmira",
    "Drubnikov",
    "Ystrelle",
    "Kormathis",
    "Pellquist",
    "Ulvaranne",
    "Thessalor",
    "Morwickel",
    "Brannochar",
    "Xandrelle",
    "Fenwyrath",
    "Golvaskin",
    "Hyrrienne",
    "Jastrowix",
    "Lumbrechta",
    "Nyxoldine",
    "Orrvanek",
    "Sabrimexa",
]
LAST = [
    "Quennington",
    "Abernathwy",
    "Blixtorpe",
    "Cromwallis",
    "Dunsivere",
    "Eldergrave",
    "Farquizzle",
    "Grimsditch",
    "Hollowmere",
    "Ingleburr",
    "Jubbleton",
    "Kettleshaw",
    "Loxleyhurst",
    "Mumbleford",
    "Nettlecombe",
    "Oddingsell",
    "Pumphrey-Vane",
    "Quarrendon",
    "Rumbelowe",
    "Snodgrassio",
]
TOWNS = [
    "Vrellingrad",
    "Oskobrin",
    "Tulmavik",
    "Zentharo",
    "Pyrrhavale",
    "Korvissk",
    "Ambrelune",
    "Dusmarrow",
    "Quethwick",
    "Ylvandor",
    "Braskovia",
    "Nimbrecht",
    "Falgorrow",
    "Sturmlitz",
    "Haverlune",
    "Joskaria",
    "Lindqvarr",
]
SHARED = "Shared Directorate of Xylophonics"  # three people: may appear in aggregates


class LiveServer(ServerProcess):
    """``lessons serve`` in a subprocess with a fresh SQLite data directory;
    stdout and stderr go to ``server.log`` in that directory. ``env`` changes
    settings (``LESSONS_RATE_...``)."""

    start_timeout = 60.0

    def __init__(self, data_dir: Path, log_level: str = "warning", **env: str) -> None:
        super().__init__(data_dir, secret=SECRET, password=PASSWORD, log_level=log_level, env=env)


# -- the recording -----------------------------------------------------------------------


@dataclass
class Item:
    """One thing a role received."""

    viewer: str  # "p07", "facilitator", "projector", "organizer"
    kind: str  # "http", "ws" or "export"
    label: str  # "GET /w/CODE", "ws", "export md"
    step: str  # the scenario step it was received in
    text: str
    status: int = 0


@dataclass
class Person:
    index: int
    name: str
    affiliation: str
    token: str = ""
    pid: int = 0
    texts: list[str] = field(default_factory=list)  # what they wrote

    @property
    def viewer(self) -> str:
        return f"p{self.index:02d}"


@dataclass
class Recording:
    url: str
    code: str = ""
    wid: int = 0
    pcookie: str = ""  # the name of the workshop's participant cookie
    people: list[Person] = field(default_factory=list)
    items: list[Item] = field(default_factory=list)
    secrets: dict[str, str] = field(default_factory=dict)  # what -> value
    exports: dict[str, tuple[int, bytes]] = field(default_factory=dict)
    export_text: dict[str, str] = field(default_factory=dict)
    collect_end: int = 0  # items[:collect_end] were received while cards were private
    facilitator_pid: int = 0
    voted: dict[str, list[str]] = field(default_factory=dict)  # viewer -> card titles
    projector_socket_query: str = ""
    server_log: str = ""
    server_alive: bool = False

    def unique_affiliations(self) -> list[str]:
        return [p.affiliation for p in self.people if p.affiliation != SHARED]


def export_to_text(fmt: str, content: bytes) -> str:
    """The text a reader of the file would see (XML parts for Office files)."""
    if fmt in ("docx", "xlsx"):
        with zipfile.ZipFile(io.BytesIO(content)) as z:
            return "\n".join(
                z.read(n).decode("utf-8", "replace") for n in z.namelist() if n.endswith(".xml")
            )
    if fmt == "pdf":
        from pypdf import PdfReader

        reader = PdfReader(io.BytesIO(content))
        return "\n".join(page.extract_text() or "" for page in reader.pages)
    return content.decode("utf-8", "replace")


class Run:
    """The scripted workshop: every request and frame goes into ``rec``."""

    def __init__(self, server: LiveServer) -> None:
        self.server = server
        self.rec = Recording(url=server.url)
        self.step = "setup"
        self.clients: dict[str, httpx.AsyncClient] = {}
        self.sockets: list[ClientConnection] = []
        self.readers: list[asyncio.Task[None]] = []

    def client(self, viewer: str) -> httpx.AsyncClient:
        if viewer not in self.clients:
            # A request sent on a connection the server is closing fails with
            # ReadError, which a loaded machine made happen now and then.
            self.clients[viewer] = httpx.AsyncClient(
                base_url=self.server.url,
                timeout=60,
                trust_env=False,
                limits=KEEPALIVE,
            )
        return self.clients[viewer]

    async def http(
        self, viewer: str, method: str, path: str, *, ok: bool = True, **kw: Any
    ) -> httpx.Response:
        r = await self.client(viewer).request(method, path, **kw)
        label = f"{method} {path.replace(self.rec.code, 'CODE') if self.rec.code else path}"
        self.rec.items.append(Item(viewer, "http", label, self.step, r.text, r.status_code))
        if ok:
            assert r.status_code < 400, f"{viewer} {label}: {r.status_code} {r.text[:300]}"
        return r

    async def open_socket(self, viewer: str, headers: dict[str, str], query: str = "") -> None:
        url = self.server.url.replace("http://", "ws://") + f"/ws/workshops/{self.rec.code}"
        sock = await connect(
            url + query,
            origin=Origin(self.server.url),
            additional_headers=headers,
            max_size=None,
            proxy=None,
            open_timeout=20,
        )
        await sock.send(json.dumps({"type": "hello", "seq": None}))
        self.sockets.append(sock)

        async def read() -> None:
            try:
                async for frame in sock:
                    text = frame if isinstance(frame, str) else frame.decode()
                    self.rec.items.append(Item(viewer, "ws", "ws", self.step, text))
            except Exception:  # noqa: S110 - a closed socket ends the recording
                pass

        self.readers.append(asyncio.create_task(read()))

    async def settle(self, seconds: float = 1.0) -> None:
        """Let pushes arrive (the hub coalesces for 100 ms by default)."""
        await asyncio.sleep(seconds)

    async def close(self) -> None:
        for sock in self.sockets:
            await sock.close()
        await asyncio.gather(*self.readers, return_exceptions=True)
        for c in self.clients.values():
            await c.aclose()


async def _csrf(run: Run, viewer: str, path: str) -> str:
    page = await run.http(viewer, "GET", path)
    marker = 'name="csrf-token" content="'
    start = page.text.index(marker) + len(marker)
    return page.text[start : page.text.index('"', start)]


async def _scenario(run: Run) -> None:
    rec = run.rec
    # The organizer: API token, workshop, then the pages (affiliations, ratings).
    r = await run.http(
        "organizer", "POST", "/api/v1/login", json={"name": ORGANIZER, "password": PASSWORD}
    )
    org = {"Authorization": f"Bearer {r.json()['token']}"}
    rec.secrets["organizer token"] = r.json()["token"]
    settings = {"private_writing": True, "participant_annex": False, "anonymize_on_close": True}
    r = await run.http(
        "organizer",
        "POST",
        "/api/v1/workshops",
        json={"title": "Capture run", "template": TEMPLATE, "settings": settings},
        headers=org,
    )
    created = r.json()
    rec.code, rec.wid = created["code"], created["id"]
    rec.pcookie = cookie_names(created["uid"])[0]
    fa = created["focus_areas"][0]
    fkey = created["facilitator_url"].split("key=")[1]
    pkey = created["projector_url"].split("key=")[1]
    rec.secrets.update({"facilitator key": fkey, "projector key": pkey})
    code, api = rec.code, f"/api/v1/workshops/{rec.code}"

    rec.people = [
        Person(i, f"{FIRST[i]} {LAST[i]}", f"Bureau of {TOWNS[i]}" if i < 17 else SHARED)
        for i in range(20)
    ]
    token = await _csrf(run, "organizer", "/login")
    await run.http(
        "organizer",
        "POST",
        "/login",
        data={"name": ORGANIZER, "password": PASSWORD, "csrf_token": token},
    )
    token = await _csrf(run, "organizer", f"/organizer/w/{code}")
    affiliations = "\n".join(sorted({p.affiliation for p in rec.people}))
    await run.http(
        "organizer",
        "POST",
        f"/organizer/w/{code}/affiliations",
        data={"affiliations": affiliations, "csrf_token": token},
    )
    await run.http(
        "organizer",
        "POST",
        f"/organizer/w/{code}/fa/{fa['id']}",
        data={
            "action": "save",
            "title": fa["title"],
            "prompt": fa["prompt"],
            "kinds": fa["kinds"],
            "ratings_enabled": "1",
            "csrf_token": token,
        },
    )

    # The facilitator and the participants join; everyone opens a socket.
    r = await run.http(
        "facilitator",
        "POST",
        f"{api}/participants",
        json={"display_name": "Facilitator", "facilitator_key": fkey},
    )
    rec.secrets["facilitator token"] = r.json()["token"]
    rec.facilitator_pid = r.json()["participant_id"]
    fac = {"Authorization": f"Bearer {r.json()['token']}"}
    run.client("facilitator").cookies.set(rec.pcookie, r.json()["token"])
    for p in rec.people:
        r = await run.http(
            p.viewer,
            "POST",
            f"{api}/participants",
            json={"display_name": p.name, "affiliation": p.affiliation},
        )
        p.token, p.pid = r.json()["token"], r.json()["participant_id"]
        run.client(p.viewer).cookies.set(rec.pcookie, p.token)
    for p in rec.people:
        await run.open_socket(p.viewer, {"Cookie": f"{rec.pcookie}={p.token}"})
    await run.open_socket("facilitator", fac)
    # The projector's socket carries its key in the URL (the endpoint accepts
    # that); its page carries it in the query too, once.
    rec.projector_socket_query = f"?key={pkey}"
    await run.open_socket("projector", {}, rec.projector_socket_query)
    await run.http("projector", "GET", f"/w/{code}/projector", params={"key": pkey})
    await run.settle(0.5)

    # Collect, with private writing: nobody but the author (and staff) sees text.
    run.step = "collect"
    await run.http(
        "facilitator",
        "PUT",
        f"{api}/focus-areas/{fa['id']}/phase",
        json={"phase": "collect"},
        headers=fac,
    )

    async def write(p: Person) -> None:
        page = await run.http(p.viewer, "GET", f"/w/{code}")
        marker = 'name="csrf-token" content="'
        csrf = page.text.split(marker, 1)[1].split('"', 1)[0]
        title_a = f"Kestrel measure {p.index:02d} on joint patrols"
        body_a = f"Obsidian finding {p.index:02d}: border liaison offices shared data weekly."
        await run.http(
            p.viewer,
            "POST",
            f"{api}/cards",
            json={"focus_area_id": fa["id"], "kind": "lesson", "title": title_a, "body": body_a},
            headers={"Authorization": f"Bearer {p.token}"},
        )
        title_b = f"Heron practice {p.index:02d} for witness support"
        body_b = f"Malachite evidence {p.index:02d}: prosecutors trained with police."
        await run.http(
            p.viewer,
            "POST",
            f"/w/{code}/cards",
            data={
                "focus_area_id": str(fa["id"]),
                "kind": "method",
                "title": title_b,
                "body": body_b,
            },
            headers={"HX-Request": "true", "X-CSRF-Token": csrf},
        )
        p.texts = [title_a, body_a, title_b, body_b]
        await run.http(p.viewer, "GET", f"{api}/cards")
        await run.http(p.viewer, "GET", f"/w/{code}/mine/{fa['id']}")
        await run.http(p.viewer, "GET", f"{api}/results")

    await asyncio.gather(*(write(p) for p in rec.people))
    # Probing for other people's text while it is private.
    for p in rec.people[:5]:
        other = rec.people[(p.index + 1) % 20]
        probe = f"Kestrel measure {other.index:02d} on joint patrols"
        await run.http(
            p.viewer, "GET", f"{api}/similar", params={"focus_area_id": fa["id"], "text": probe}
        )
        await run.http(
            p.viewer,
            "GET",
            f"/w/{code}/similar",
            params={"focus_area_id": fa["id"], "title": probe},
        )
        await run.http(p.viewer, "GET", f"/w/{code}")
    await run.http("projector", "GET", f"/w/{code}/projector")
    await run.http("facilitator", "GET", f"/w/{code}/console")
    await run.settle(1.5)
    rec.collect_end = len(rec.items)

    # Cluster: groups, a merge, a hidden card, a move.
    run.step = "cluster"
    await run.http(
        "facilitator",
        "PUT",
        f"{api}/focus-areas/{fa['id']}/phase",
        json={"phase": "cluster"},
        headers=fac,
    )
    cards = (await run.http("facilitator", "GET", f"{api}/cards", headers=fac)).json()
    ids = [c["id"] for c in cards]
    title_of = {c["id"]: c["title"] for c in cards}
    assert len(ids) == 40, len(ids)
    clusters = []
    for i in range(4):
        r = await run.http(
            "facilitator",
            "POST",
            f"{api}/clusters",
            json={
                "focus_area_id": fa["id"],
                "title": f"Theme {i}",
                "card_ids": ids[i * 8 : i * 8 + 8],
            },
            headers=fac,
        )
        clusters.append(r.json()["id"])
    await run.http(
        "facilitator", "POST", f"{api}/cards/{ids[39]}/merge", json={"into": ids[38]}, headers=fac
    )
    await run.http(
        "facilitator", "PATCH", f"{api}/cards/{ids[37]}", json={"status": "hidden"}, headers=fac
    )
    await run.http(
        "facilitator",
        "PUT",
        f"{api}/cards/{ids[36]}/cluster",
        json={"cluster_id": clusters[0]},
        headers=fac,
    )
    await run.http(
        "organizer",
        "POST",
        f"{api}/clusters/{clusters[3]}/merge",
        json={"into": clusters[2]},
        headers=org,
    )
    await run.settle()

    # Vote and rate (blind voting: totals hidden until revealed).
    run.step = "vote"
    await run.http(
        "facilitator",
        "PUT",
        f"{api}/focus-areas/{fa['id']}/phase",
        json={"phase": "vote"},
        headers=fac,
    )

    async def vote(p: Person) -> None:
        auth = {"Authorization": f"Bearer {p.token}"}
        for k in range(3):
            card = ids[(p.index * 3 + k) % 30]
            await run.http(p.viewer, "POST", f"{api}/cards/{card}/votes", headers=auth)
            rec.voted.setdefault(p.viewer, []).append(title_of[card])
        rec.voted[p.viewer].append(title_of[ids[p.index]])
        page = await run.http(p.viewer, "GET", f"/w/{code}")
        csrf = page.text.split('name="csrf-token" content="', 1)[1].split('"', 1)[0]
        await run.http(
            p.viewer,
            "POST",
            f"/w/{code}/cards/{ids[p.index]}/votes",
            headers={"HX-Request": "true", "X-CSRF-Token": csrf},
        )
        await run.http(
            p.viewer,
            "PUT",
            f"{api}/cards/{ids[p.index]}/rating",
            json={"impact": 1 + p.index % 5, "feasibility": 5 - p.index % 5},
            headers=auth,
        )
        await run.http(p.viewer, "GET", f"{api}/results")

    await asyncio.gather(*(vote(p) for p in rec.people))
    await run.http("facilitator", "GET", f"{api}/results", headers=fac)
    await run.http("organizer", "GET", f"{api}/results", headers=org)
    await run.settle()

    # Reveal, synthesize, look at everything.
    run.step = "synthesize"
    await run.http("facilitator", "POST", f"{api}/focus-areas/{fa['id']}/reveal", headers=fac)
    await run.http(
        "facilitator",
        "PUT",
        f"{api}/focus-areas/{fa['id']}/phase",
        json={"phase": "synthesize"},
        headers=fac,
    )
    for i, cl in enumerate(clusters[:3]):
        await run.http(
            "facilitator",
            "PATCH",
            f"{api}/clusters/{cl}",
            json={"synthesis": f"Synthesis {i}: start early."},
            headers=fac,
        )
    await run.settle()
    for p in rec.people:
        await run.http(p.viewer, "GET", f"/w/{code}")
        await run.http(p.viewer, "GET", f"{api}/results")
        await run.http(p.viewer, "GET", f"{api}/me")
    await run.http("projector", "GET", f"/w/{code}/projector")
    await run.http("facilitator", "GET", f"/w/{code}/console")
    await run.http("facilitator", "GET", f"/w/{code}/report")
    await run.http("organizer", "GET", f"/organizer/w/{code}")
    await run.http("organizer", "GET", f"/w/{code}/report")
    await run.http("organizer", "GET", f"{api}")

    run.step = "export"
    for fmt in FORMATS:
        r = await run.client("organizer").get(f"{api}/export", params={"format": fmt}, headers=org)
        rec.exports[fmt] = (r.status_code, r.content)
        if r.status_code == 200:
            text = export_to_text(fmt, r.content)
            rec.export_text[fmt] = text
            rec.items.append(Item("organizer", "export", f"export {fmt}", run.step, text, 200))
    await run.settle(0.5)


def run_scenario(server: LiveServer) -> Recording:
    async def main() -> Recording:
        run = Run(server)
        try:
            await _scenario(run)
        finally:
            await run.close()
        for p in run.rec.people:
            run.rec.secrets[f"token of {p.viewer}"] = p.token
        return run.rec

    return asyncio.run(main())
