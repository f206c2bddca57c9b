"""Export timings for a large workshop: 2,000 cards over 3 focus areas, 60
clusters, 60 participants with votes and ratings, in a temporary SQLite
database. Prints wall and CPU seconds for each format (targets: DOCX under
3 s, PDF under 10 s); BENCH_CARDS changes the number of cards.
Run: ``.venv/bin/python bench/exports.py``."""

from __future__ import annotations

import hashlib
import os
import random
import sys
import tempfile
import time
from datetime import date
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlmodel import Session, SQLModel  # noqa: E402

from app.config import Settings  # noqa: E402
from app.db import make_engine, read_engine  # noqa: E402
from app.exports import FORMATS, export_workshop  # noqa: E402
from app.exports.outcome import build_outcome  # noqa: E402
from app.exports.prepared import PREPARED, PreparedExports  # noqa: E402
from app.models import (  # noqa: E402
    DIMENSIONS,
    PARTNERS,
    Card,
    Cluster,
    Event,
    FocusArea,
    Participant,
    Rating,
    Vote,
    Workshop,
)

CARDS = int(os.environ.get("BENCH_CARDS", "2000"))
AREAS, CLUSTERS, PEOPLE = 3, 60, 60
GROUPS = [
    "OSCE Secretariat",
    "ODIHR",
    "Field operation: Mission to Serbia",
    "Field operation: Skopje",
]
WORDS = [
    "co-operation",
    "border",
    "police",
    "training",
    "prosecutors",
    "trafficking",
    "evidence",
    "partners",
    "mission",
    "assessment",
    "curriculum",
    "legislation",
    "financial",
    "investigation",
    "corruption",
    "field",
    "office",
    "сотрудничество",
    "граница",
    "полиция",
    "обучение",
]


def sentence(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n)).capitalize() + "."


def build(session: Session) -> int:
    rng = random.Random(7)
    ws = Workshop(
        title="Lessons learned: organized crime",
        code="BENCH1",
        date=date(2007, 10, 15),
        end_date=date(2007, 10, 16),
        venue="Hofburg, Vienna",
        hosted_by="OSCE Secretariat",
        classification="OSCE internal",
        executive_summary="\n\n".join(sentence(rng, 40) for _ in range(3)),
    )
    session.add(ws)
    session.flush()
    people = [
        Participant(
            workshop_id=ws.id,
            display_name=f"Person {i}",
            affiliation=GROUPS[i % len(GROUPS)],
            token_hash=hashlib.sha256(str(i).encode()).hexdigest(),
        )
        for i in range(PEOPLE)
    ]
    session.add_all(people)
    seq = 0
    for a in range(AREAS):
        fa = FocusArea(
            workshop_id=ws.id,
            position=a,
            title=f"Focus area {a + 1}",
            prompt=sentence(rng, 15),
            phase="closed",
            ratings_enabled=True,
        )
        session.add(fa)
        session.flush()
        clusters = [
            Cluster(
                workshop_id=ws.id,
                focus_area_id=fa.id,
                title=sentence(rng, 5)[:-1],
                synthesis=sentence(rng, 50),
                position=i,
                is_recommendation=i % 7 == 0,
            )
            for i in range(CLUSTERS // AREAS)
        ]
        session.add_all(clusters)
        session.flush()
        cards = [
            Card(
                workshop_id=ws.id,
                focus_area_id=fa.id,
                kind=rng.choice(["tool", "method", "lesson", "recommendation"]),
                title=sentence(rng, 8)[:140],
                body=sentence(rng, rng.randint(5, 30)),
                cluster_id=rng.choice(clusters).id if rng.random() < 0.9 else None,
                context={
                    "dimensions": rng.sample(list(DIMENSIONS), rng.randint(0, 2)),
                    "partners": rng.sample(PARTNERS, rng.randint(0, 2)),
                    "where": rng.choice(["", "Serbia", "Skopje", "Dushanbe"]),
                },
            )
            for _ in range(CARDS // AREAS + (1 if a < CARDS % AREAS else 0))
        ]
        session.add_all(cards)
        session.flush()
        for p in people:
            for c in rng.sample(cards, 3):
                session.add(
                    Vote(
                        participant_id=p.id,
                        card_id=c.id,
                        focus_area_id=fa.id,
                        affiliation=p.affiliation,
                        dots=rng.randint(1, 2),
                    )
                )
            for c in rng.sample(cards, 20):
                session.add(
                    Rating(
                        participant_id=p.id,
                        card_id=c.id,
                        focus_area_id=fa.id,
                        impact=rng.randint(1, 5),
                        feasibility=rng.randint(1, 5),
                    )
                )
        for c in cards:
            seq += 1
            session.add(
                Event(
                    workshop_id=ws.id,
                    seq=seq,
                    kind="card.moved",
                    payload={
                        "card_id": c.id,
                        "from_cluster_id": None,
                        "to_cluster_id": c.cluster_id,
                    },
                )
            )
    ws.last_seq = seq
    session.commit()
    assert ws.id is not None
    return ws.id


def report(name: str, t0: float, c0: float, extra: str) -> None:
    # CPU time too: on a shared machine wall time swings with the load.
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    print(f"{name:>8}: {wall:6.2f} s wall {cpu:6.2f} s cpu  {extra}")


def prepared_downloads(engine: Any, session: Session, ws_id: int, cold: dict[str, float]) -> None:
    """A closed workshop's PDF and DOCX are prepared in the background
    (app/exports/prepared.py): the time the download then takes, against the
    cold render above."""
    session.commit()  # as a request would: no transaction left open meanwhile
    cache = PreparedExports(read_engine(engine))  # as the app does
    try:
        t0 = time.perf_counter()
        cache.prepare(ws_id)
        while not all(cache.ready(ws_id, fmt) for fmt in PREPARED):
            if time.perf_counter() - t0 > 600:
                raise SystemExit("the downloads were not prepared in 10 minutes")
            time.sleep(0.05)
        print(f"prepared in the background in {time.perf_counter() - t0:.1f} s; then:")
        for fmt in PREPARED:
            t0, c0 = time.perf_counter(), time.process_time()
            cache.export(session, ws_id, fmt)
            wall = time.perf_counter() - t0
            report(fmt, t0, c0, f"(prepared; {cold[fmt] / wall:,.0f}x faster than cold)")
    finally:
        cache.close()


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        engine = make_engine(Settings(database_url=f"sqlite:///{tmp}/bench.db", data_dir=Path(tmp)))
        SQLModel.metadata.create_all(engine)
        with Session(engine) as session:
            t0 = time.perf_counter()
            ws_id = build(session)
            print(f"built {CARDS} cards in {time.perf_counter() - t0:.1f} s")
            t0, c0 = time.perf_counter(), time.process_time()
            build_outcome(session, ws_id)
            report("outcome", t0, c0, "")
            cold = {}
            for fmt in FORMATS:
                t0, c0 = time.perf_counter(), time.process_time()
                out = export_workshop(session, ws_id, fmt)
                size = f"{len(out.content) / 1024:8.0f} KiB  {out.filename}"
                report(fmt, t0, c0, size)
                cold[fmt] = time.perf_counter() - t0
            prepared_downloads(engine, session, ws_id, cold)
        engine.dispose()


if __name__ == "__main__":
    main()
