"""The Jinja environment and the board's fragments, shared by pages, htmx
responses and websocket pushes, so a card looks the same everywhere.

Audiences: ``board`` (participants; no personal state), ``facilitator``
(moderation and clustering controls) and ``projector`` (the spotlight focus
area, large). A push renders each changed fragment once per audience."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape
from sqlmodel import Session

from app.domain import cards as cards_domain
from app.domain import clusters as clusters_domain
from app.domain import phases, votes, workshops
from app.domain.actors import ActorRole
from app.domain.cards import CardView, Viewer
from app.models import (
    CRIME_AREAS,
    DIMENSIONS,
    PARTNERS,
    PHASES,
    Card,
    Cluster,
    FocusArea,
    Phase,
    Workshop,
)

TEMPLATES = Path(__file__).resolve().parent / "templates"
AUDIENCES = ("board", "facilitator", "projector")

KIND_LABELS = {
    "tool": "Tool",
    "method": "Method",
    "lesson": "Lesson",
    "recommendation": "Recommendation",
}
PHASE_LABELS = {
    "draft": "Not started",
    "collect": "Writing cards",
    "cluster": "Clustering",
    "vote": "Voting",
    "synthesize": "Results",
    "closed": "Closed",
}


def _iso(value: datetime | None) -> str:
    if value is None:
        return ""
    return (value if value.tzinfo else value.replace(tzinfo=UTC)).isoformat()


def make_env() -> Environment:
    env = Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=select_autoescape(["html", "xml", "svg"], default_for_string=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.globals.update(
        KIND_LABELS=KIND_LABELS,
        PHASE_LABELS=PHASE_LABELS,
        PHASES=[p.value for p in PHASES],
        DIMENSIONS=DIMENSIONS,
        PARTNERS=PARTNERS,
        CRIME_AREAS=CRIME_AREAS,
    )
    env.filters["iso"] = _iso
    return env


env = make_env()


def render(template: str, /, **ctx: Any) -> str:
    # Positional-only: a context variable may well be called "name".
    return env.get_template(template).render(**ctx)


@dataclass
class ClusterView:
    cluster: Cluster
    cards: list[CardView]
    dots: int = 0
    voters: int = 0


@dataclass
class AreaView:
    fa: FocusArea
    cards_count: int
    text_hidden: bool
    totals_visible: bool
    clusters: list[ClusterView] = field(default_factory=list)
    loose: list[CardView] = field(default_factory=list)
    totals: dict[int, tuple[int, int]] = field(default_factory=dict)
    merged_from: dict[int, list[Card]] = field(default_factory=dict)
    turnout: tuple[int, int] = (0, 0)
    writers: int = 0
    max_dots: int = 1
    results: Any = None
    chart_svg: str = ""

    @property
    def writable(self) -> bool:
        return cards_domain.can_write(self.fa)


def area_view(
    session: Session, workshop: Workshop, fa: FocusArea, viewer: Viewer, counts: dict[int, int]
) -> AreaView:
    assert fa.id is not None
    hidden = cards_domain.text_hidden(workshop, fa) and not (viewer.sees_private)
    view = AreaView(
        fa=fa,
        cards_count=counts.get(fa.id, 0),
        text_hidden=hidden,
        totals_visible=phases.totals_visible(workshop, fa),
    )
    if fa.phase == Phase.draft and not viewer.is_staff:
        return view
    if not hidden:
        visible = cards_domain.visible_cards(
            session, workshop=workshop, viewer=viewer, focus_area_id=fa.id
        )
        if fa.phase in (Phase.vote, Phase.synthesize, Phase.closed):
            view.totals = votes.card_totals(session, focus_area_id=fa.id)
        view.turnout = votes.turnout(session, focus_area_id=fa.id)
        view.merged_from = clusters_domain.merged_from(
            session, card_ids=[c.id for c in visible if c.id is not None]
        )
        by_cluster: dict[int | None, list[CardView]] = {}
        for c in visible:
            by_cluster.setdefault(c.cluster_id, []).append(c)
        for cl in clusters_domain.clusters_of(session, focus_area_id=fa.id):
            members = by_cluster.pop(cl.id, [])
            dots = sum(view.totals.get(c.id or 0, (0, 0))[0] for c in members)
            voters = sum(view.totals.get(c.id or 0, (0, 0))[1] for c in members)
            view.clusters.append(ClusterView(cl, members, dots, voters))
        view.loose = [c for cid, cs in by_cluster.items() for c in cs]
        if view.totals_visible and fa.phase in (Phase.synthesize, Phase.closed):
            view.clusters.sort(key=lambda cv: (-cv.dots, -cv.voters, cv.cluster.position))
            view.loose.sort(key=lambda c: -view.totals.get(c.id or 0, (0, 0))[0])
            view.results, view.chart_svg = _results(session, fa)
        view.max_dots = max([cv.dots for cv in view.clusters] + [1])
    else:
        view.turnout = votes.turnout(session, focus_area_id=fa.id)
    return view


def _results(session: Session, fa: FocusArea) -> tuple[Any, str]:
    """Ranked results and the impact x feasibility chart (where rated)."""
    from markupsafe import Markup

    from app import charts
    from app.domain.results import focus_area_results

    assert fa.id is not None
    res = focus_area_results(session, fa.id)
    points = [
        charts.Point(str(c.rank), c.title, c.impact, c.feasibility, c.dots or 0)
        for c in res.clusters
        if c.impact is not None and c.feasibility is not None
    ]
    svg = Markup(charts.to_svg(charts.impact_feasibility(points))) if points else ""  # noqa: S704 - drawn by us, text escaped there
    return res, svg


def board_context(
    session: Session, workshop: Workshop, viewer: Viewer, only: set[int] | None = None
) -> dict[str, Any]:
    """Everything a board page or push shows; ``only`` limits the (costly)
    focus-area views to those ids."""
    assert workshop.id is not None
    counts = cards_domain.count_cards(session, workshop_id=workshop.id)
    areas = [
        area_view(session, workshop, fa, viewer, counts)
        for fa in workshops.focus_areas(session, workshop.id)
        if only is None or fa.id in only
    ]
    ctx: dict[str, Any] = {
        "workshop": workshop,
        "areas": areas,
        "staff": viewer.is_staff,
        "participants": workshops.participant_count(session, workshop.id),
        "seq": workshop.last_seq,
    }
    if viewer.is_staff:
        writers = cards_domain.writers_per_area(session, workshop_id=workshop.id)
        for a in areas:
            a.writers = writers.get(a.fa.id or 0, 0)
    return ctx


BOARD_VIEWER = Viewer(ActorRole.participant)


def staff_viewer(facilitator_sees_private: bool) -> Viewer:
    return Viewer(ActorRole.facilitator, sees_private=facilitator_sees_private)


def spotlight_id(workshop: Workshop, areas: list[FocusArea]) -> int | None:
    """The focus area the projector shows: the spotlight, else the first live one."""
    ids = {fa.id for fa in areas}
    if workshop.spotlight_focus_area_id in ids:
        return workshop.spotlight_focus_area_id
    live = [fa for fa in areas if fa.phase not in (Phase.draft, Phase.closed)]
    chosen = live or areas
    return chosen[0].id if chosen else None


def spotlight_area(ctx: dict[str, Any]) -> AreaView | None:
    areas: list[AreaView] = ctx["areas"]
    wanted = spotlight_id(ctx["workshop"], [a.fa for a in areas])
    return next((a for a in areas if a.fa.id == wanted), None)


def render_push(
    session: Session,
    workshop: Workshop,
    *,
    fa_ids: set[int] | None,
    facilitator_sees_private: bool,
    join_url: str,
) -> dict[str, str]:
    """The websocket frames for one push: ``fa_ids`` None means every fragment
    (a resync); otherwise only those focus areas plus the status bar."""
    assert workshop.id is not None
    frames: dict[str, str] = {}
    spot = spotlight_id(workshop, workshops.focus_areas(session, workshop.id))
    projector_changed = fa_ids is None or spot in fa_ids
    only = None if fa_ids is None else fa_ids | ({spot} if projector_changed and spot else set())
    board = board_context(session, workshop, BOARD_VIEWER, only)
    staff = board_context(session, workshop, staff_viewer(facilitator_sees_private), fa_ids)
    for audience, ctx in (("board", board), ("facilitator", staff)):
        frames[audience] = render("partials/_push.html", fa_ids=fa_ids, audience=audience, **ctx)
    if projector_changed:
        frames["projector"] = render(
            "partials/_push_projector.html",
            area=next((a for a in board["areas"] if a.fa.id == spot), None),
            join_url=join_url,
            **board,
        )
    return frames
