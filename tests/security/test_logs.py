"""The server's own log after a whole workshop (the capture run, at log level
info): requests are logged by path and status only. No token, no link key,
no name, no affiliation, no card text, and no participant id next to text."""

from __future__ import annotations

import re

from .live import Recording


def test_the_log_is_not_empty(live_run: Recording) -> None:
    # Otherwise the checks below prove nothing.
    assert re.search(
        r"(GET|POST|PUT|PATCH|DELETE) /api/v1/workshops/\S+ 20[01] ", live_run.server_log
    )


# uvicorn logs each websocket handshake with its query string (see below).
HANDSHAKE_WITH_KEY = re.compile(r'^.*"WebSocket /ws/\S*\?key=.*$', re.MULTILINE)


def test_the_log_holds_no_secrets(live_run: Recording) -> None:
    log = HANDSHAKE_WITH_KEY.sub("", live_run.server_log)
    found = [what for what, value in live_run.secrets.items() if value in log]
    assert not found, f"in the server log: {found}"
    # Not even their beginnings (a truncated token is still a lead).
    found = [what for what, value in live_run.secrets.items() if value[:12] in log]
    assert not found, f"in the server log (truncated): {found}"


def test_the_log_holds_no_people_and_no_text(live_run: Recording) -> None:
    log = live_run.server_log
    found = []
    for p in live_run.people:
        found += [w for w in (p.name, *p.name.split()) if w in log]
        found += [t for t in p.texts if t in log]
        found += [t.split(":")[0] for t in p.texts if t.split(":")[0] in log]
    found += [a for a in live_run.unique_affiliations() if a in log]
    found += [w for w in ("Kestrel", "Obsidian", "Heron", "Malachite", "Synthesis") if w in log]
    assert not found, f"in the server log: {sorted(set(found))[:10]}"


def test_no_participant_id_next_to_anything(live_run: Recording) -> None:
    pattern = re.compile(r"(participant|author)[_ ]?id\W{0,3}\d+", re.IGNORECASE)
    assert not pattern.search(live_run.server_log), pattern.search(live_run.server_log)


def test_websocket_handshakes_do_not_log_link_keys(live_run: Recording) -> None:
    key = live_run.secrets["projector key"]
    assert "?key=" in live_run.projector_socket_query, "the run did not use ?key="
    assert key not in live_run.server_log
