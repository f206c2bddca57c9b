"""What the browser tests share: the app server in a subprocess (through
tests/support/live_server.py), a small JSON API client, the guard that records
console errors and CSP violations on every page, the axe-core accessibility
check, and keyboard helpers."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from tests.support.live_server import KEEPALIVE, ORGANIZER, ROOT, ServerProcess

HERE = Path(__file__).resolve().parent
AXE = HERE / "vendor" / "axe-4.11.0.min.js"
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = Path("/usr/bin/chromium")
LAUNCH_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
PASSWORD = "e2e organizer password, long enough"
SECRET = "e2e-secret-" + "0123456789abcdef" * 3
OSCE = "osce-organized-crime-2007"
WCAG_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]


class Server(ServerProcess):
    """The real app: ``lessons serve`` on a free port with its own SQLite
    data directory. It can be stopped and started again on the same port and
    data, which is how the reconnect test takes it away from the browsers."""

    migrate_timeout = organizer_timeout = 60.0
    stop_timeout = 10.0

    def __init__(self, data_dir: Path, port: int | None = None) -> None:
        super().__init__(data_dir, secret=SECRET, password=PASSWORD, port=port)

    def server_errors(self) -> list[str]:
        """Tracebacks and 5xx lines from the server log."""
        return [
            line
            for line in self.log_text().splitlines()
            if "Traceback" in line or re.search(r"\s5\d\d\s", line) or "ERROR" in line
        ]


class Api:
    """The JSON API, used to set scenes up quickly and to change a workshop
    behind the browsers' backs."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.http = httpx.Client(base_url=base, timeout=30, limits=KEEPALIVE)

    def call(self, method: str, path: str, token: str | None = None, **kw: Any) -> Any:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        r = self.http.request(method, "/api/v1" + path, headers=headers, **kw)
        assert r.status_code < 400, f"{method} {path}: {r.status_code} {r.text[:500]}"
        return r.json() if r.content else None

    def page_action(self, path: str, token: str, **form: str) -> None:
        """A console action (form post) with the organizer's bearer token."""
        r = self.http.post(path, data=form, headers={"Authorization": f"Bearer {token}"})
        assert r.status_code < 400, f"POST {path}: {r.status_code} {r.text[:500]}"

    def login(self) -> str:
        body = {"name": ORGANIZER, "password": PASSWORD}
        return str(self.call("POST", "/login", json=body)["token"])

    def create_workshop(self, token: str, title: str, template: str = OSCE) -> dict[str, Any]:
        created: dict[str, Any] = self.call(
            "POST", "/workshops", token, json={"title": title, "template": template}
        )
        return created

    def join(self, code: str, name: str, affiliation: str = "ODIHR") -> dict[str, Any]:
        joined: dict[str, Any] = self.call(
            "POST",
            f"/workshops/{code}/participants",
            json={"display_name": name, "affiliation": affiliation},
        )
        return joined

    def card(self, code: str, token: str, fa_id: int, title: str, kind: str = "lesson") -> Any:
        return self.call(
            "POST",
            f"/workshops/{code}/cards",
            token,
            json={"focus_area_id": fa_id, "kind": kind, "title": title, "body": ""},
        )

    def phase(self, code: str, token: str, fa_id: int, phase: str) -> Any:
        return self.call(
            "PUT", f"/workshops/{code}/focus-areas/{fa_id}/phase", token, json={"phase": phase}
        )

    def close(self) -> None:
        self.http.close()


# -- the browser guard ----------------------------------------------------------------

# Runs before any page script; CSP violations are reported through the console
# so the report survives navigations (a window variable would not).
CSP_LISTENER = """
document.addEventListener("securitypolicyviolation", function (e) {
  console.error("CSP violation: " + e.violatedDirective + " blocked " +
    (e.blockedURI || "inline code") + " at " + e.sourceFile + ":" + e.lineNumber);
}, true);
"""


@dataclass
class Guard:
    """Console errors, page errors and CSP violations seen on any page."""

    problems: list[str] = field(default_factory=list)
    allowed: list[re.Pattern[str]] = field(default_factory=list)
    csp_seen: int = 0

    def allow(self, *patterns: str) -> None:
        self.allowed.extend(re.compile(p) for p in patterns)

    def record(self, who: str, text: str) -> None:
        if "CSP violation" in text or "Content Security Policy" in text:
            self.csp_seen += 1
        if any(p.search(text) for p in self.allowed):
            return
        self.problems.append(f"[{who}] {text}")

    def watch(self, page: Any, who: str) -> None:
        def on_console(msg: Any) -> None:
            if msg.type == "error":
                loc = msg.location or {}
                self.record(who, f"{msg.text} ({loc.get('url', '?')})")

        page.on("console", on_console)
        page.on("pageerror", lambda exc: self.record(who, f"uncaught: {exc}"))

    def assert_clean(self) -> None:
        problems, self.problems = self.problems, []
        assert not problems, "Browser console errors or CSP violations:\n" + "\n".join(problems)


# -- accessibility --------------------------------------------------------------------

_AXE_RUN = """async (tags) => {
  const r = await axe.run(document, {
    runOnly: {type: "tag", values: tags}, resultTypes: ["violations"]});
  return r.violations.map(v => ({
    id: v.id, impact: v.impact, help: v.help,
    nodes: v.nodes.slice(0, 6).map(n => n.target.join(" ") + " :: " +
      (n.failureSummary || "").replace(/\\s+/g, " ").slice(0, 300))}));
}"""


@dataclass
class A11y:
    """Runs axe-core on a page and keeps every violation, so one run shows
    them all; the test asserts at its end."""

    violations: list[str] = field(default_factory=list)
    checked: list[str] = field(default_factory=list)

    def check(self, page: Any, label: str) -> None:
        # add_script_tag would insert an inline <script>, which the app's CSP
        # (rightly) refuses; evaluating the source goes through the devtools
        # protocol, which CSP does not govern.
        if not page.evaluate("typeof window.axe === 'object'"):
            page.evaluate(AXE.read_text(encoding="utf-8") + "\n;void 0")
        found = page.evaluate(_AXE_RUN, WCAG_TAGS)
        self.checked.append(label)
        for v in found:
            nodes = "\n      ".join(v["nodes"])
            self.violations.append(f"{label}: {v['id']} ({v['impact']}) {v['help']}\n      {nodes}")

    def assert_clean(self) -> None:
        summary = ARTIFACTS / "axe-summary.jsonl"
        ARTIFACTS.mkdir(exist_ok=True)
        with summary.open("a", encoding="utf-8") as f:
            f.write(json.dumps({"checked": self.checked, "violations": self.violations}) + "\n")
        assert not self.violations, "axe-core violations:\n" + "\n".join(self.violations)


def assert_all(*checks: Any) -> None:
    """Run every check and report all failures together."""
    failures = []
    for check in checks:
        try:
            check()
        except AssertionError as exc:
            failures.append(str(exc))
    assert not failures, "\n\n".join(failures)


# -- layout, storage, keyboard --------------------------------------------------------


def image_loaded(locator: Any) -> bool:
    return bool(locator.evaluate("img => img.complete && img.naturalWidth > 0"))


def horizontal_overflow(page: Any) -> int:
    """How many CSS pixels the page is wider than the viewport (0 is good)."""
    return int(page.evaluate("document.documentElement.scrollWidth - window.innerWidth"))


def storage_dump(page: Any) -> dict[str, dict[str, str]]:
    return dict(
        page.evaluate(
            """() => {
              const dump = (s) => Object.fromEntries(
                Array.from({length: s.length}, (_, i) => [s.key(i), s.getItem(s.key(i))]));
              return {local: dump(localStorage), session: dump(sessionStorage)};
            }"""
        )
    )


# htmx 2 keeps the current path (only the path) in sessionStorage, even with
# historyCacheSize 0; that is not board content.
HTMX_PATH_KEY = "htmx-current-path-for-history"


def assert_nothing_stored(page: Any, secrets: list[str]) -> None:
    """Neither storage holds a snapshot of the board or any of ``secrets``."""
    dump = storage_dump(page)
    assert dump["local"] == {}, f"localStorage holds {list(dump['local'])}"
    extra = {k: v for k, v in dump["session"].items() if k != HTMX_PATH_KEY}
    assert extra == {}, f"sessionStorage holds {list(extra)}"
    path = dump["session"].get(HTMX_PATH_KEY, "")
    assert path.startswith("/") and "<" not in path and len(path) < 200, path
    blob = json.dumps(dump)
    leaked = [s for s in secrets if s in blob]
    assert not leaked, f"storage holds {leaked}"


def tab_to(page: Any, locator: Any, *, limit: int = 250, backwards: bool = False) -> None:
    """Press Tab (or Shift+Tab) until ``locator`` has the focus, as a
    keyboard user would."""
    key = "Shift+Tab" if backwards else "Tab"
    for _ in range(limit):
        # Resolved afresh each time: a push may have replaced the element.
        if locator.evaluate("el => el === document.activeElement"):
            return
        page.keyboard.press(key)
    raise AssertionError(f"{limit} presses of {key} did not reach {locator}")


def save_screenshot(page: Any, name: str, *, full_page: bool = False) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / name
    page.screenshot(path=str(path), full_page=full_page)
    return path
