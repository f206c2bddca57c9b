"""Schemathesis against a running server's /openapi.json, with a seeded
workshop and the tokens of a participant, a facilitator and an organizer:
every default check on every operation, no failure.
Rate limits are raised on this server (the limits are tested elsewhere; here
a 429 would only hide what the operation does)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from tests.support.live_server import bin_path as _bin

from .live import ORGANIZER, PASSWORD, TEMPLATE, LiveServer

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

HIGH = "1000000"
# Only the workshop code is pinned (ids stay generated: pinning an integer path
# parameter makes schemathesis count its own "wrong type" cases as accepted).
# Each operation is called with the token of a role allowed to call it: the
# participant's by default, the facilitator's for the staff operations, the
# organizer's for creating workshops.
CONFIG = """\
headers = { Authorization = "Bearer ${ST_TOKEN}" }
request-timeout = 30.0

[parameters]
"path.code" = "${ST_CODE}"

[[operations]]
include-path-regex = '/(clusters|[{]cluster_id[}]|merge|reveal|phase|export|suggestions|cluster)$'
headers = { Authorization = "Bearer ${ST_STAFF}" }

[[operations]]
include-path-regex = "^/api/v1/workshops$"
headers = { Authorization = "Bearer ${ST_ORG}" }

# Values that must come from the workshop's own lists, which GET /workshops/{code}
# publishes and no static schema can state: the affiliation (joining) and the
# card kinds a focus area takes (writing a card). 422 is the documented answer.
[[operations]]
include-path-regex = "/(participants|cards|cards/[{]card_id[}])$"
include-method = ["POST", "PATCH"]
[operations.checks.positive_data_acceptance]
expected-statuses = ["2xx", "401", "403", "404", "409", "422", "429"]
"""


@pytest.fixture
def api_server(tmp_path: Path) -> Iterator[LiveServer]:
    limits = {
        f"LESSONS_RATE_{name}": HIGH
        for name in (
            "CARDS_PER_MINUTE",
            "VOTES_PER_MINUTE",
            "EXPORTS_PER_MINUTE",
            "JOINS_PER_IP_PER_MINUTE",
            "FAILED_JOINS_PER_IP_PER_MINUTE",
            "LOGINS_PER_MINUTE",
            "FAILED_LOGINS_PER_MINUTE",
            "SIMILAR_PER_MINUTE",
            "SIMILAR_PER_WORKSHOP_PER_MINUTE",
            "SUGGESTIONS_PER_MINUTE",
            "SUGGESTIONS_PER_WORKSHOP_PER_MINUTE",
            "RENDERS_PER_MINUTE",
        )
    }
    server = LiveServer(tmp_path / "api", **limits)
    server.prepare()
    server.start()
    yield server
    server.stop()


def _seed(url: str) -> dict[str, str]:
    """A workshop collecting cards, a cluster, a card, and a participant."""
    with httpx.Client(base_url=url, timeout=30, trust_env=False) as http:
        token = http.post("/api/v1/login", json={"name": ORGANIZER, "password": PASSWORD})
        org = {"Authorization": f"Bearer {token.json()['token']}"}
        created = http.post(
            "/api/v1/workshops",
            json={"title": "Schema", "template": TEMPLATE, "settings": {"private_writing": False}},
            headers=org,
        ).json()
        code, fa = created["code"], created["focus_areas"][0]["id"]
        api = f"/api/v1/workshops/{code}"
        http.put(f"{api}/focus-areas/{fa}/phase", json={"phase": "collect"}, headers=org)
        joined = http.post(
            f"{api}/participants", json={"display_name": "Schemathesis", "affiliation": "ODIHR"}
        ).json()
        fkey = parse_qs(urlsplit(created["facilitator_url"]).query)["key"][0]
        staff = http.post(
            f"{api}/participants",
            json={"display_name": "Facilitator", "facilitator_key": fkey},
        ).json()
        me = {"Authorization": f"Bearer {joined['token']}"}
        card = http.post(
            f"{api}/cards",
            json={"focus_area_id": fa, "kind": "tool", "title": "Joint teams"},
            headers=me,
        ).json()
        cluster = http.post(
            f"{api}/clusters", json={"focus_area_id": fa, "title": "Teams"}, headers=org
        ).json()
    return {
        "ST_TOKEN": joined["token"],
        "ST_STAFF": staff["token"],
        "ST_ORG": token.json()["token"],
        "ST_CODE": code,
        "ST_FA": str(fa),
        "ST_CARD": str(card["id"]),
        "ST_CLUSTER": str(cluster["id"]),
    }


def _schemathesis(server: LiveServer, tmp_path: Path, *extra: str) -> str:
    env = {**os.environ, **_seed(server.url)}
    config = tmp_path / "schemathesis.toml"
    config.write_text(CONFIG)
    cmd = [
        _bin("schemathesis"),
        "--config-file",
        str(config),
        "run",
        f"{server.url}/openapi.json",
        "--max-examples",
        os.environ.get("SCHEMATHESIS_EXAMPLES", "25"),
        "--seed",
        os.environ.get("SCHEMATHESIS_SEED", "20260601"),
        "--workers",
        "1",
        "--no-color",
        "--generation-database",
        "none",
        *extra,
    ]
    done = subprocess.run(
        cmd, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=840, check=False
    )
    output = done.stdout + done.stderr
    (tmp_path / "schemathesis-output.txt").write_text(output)
    sys.stdout.write(output[-3000:])
    assert server.alive()
    assert done.returncode == 0, output[-6000:]
    return output


def test_the_whole_schema_passes_every_default_check(
    api_server: LiveServer, tmp_path: Path
) -> None:
    _schemathesis(api_server, tmp_path)
