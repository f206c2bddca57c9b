"""security/audit.py, against a small package index served on localhost: a
vulnerability in the installed (latest) release fails the audit, an id named
in the exceptions file does not, and an index that cannot be reached fails
rather than passing as clean."""

from __future__ import annotations

import importlib.util
import json
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]

PROJECTS: dict[str, dict[str, Any]] = {
    "safe": {"info": {"version": "2.0"}, "releases": {"2.0": []}, "vulnerabilities": []},
    "leaky": {
        "info": {"version": "1.0"},
        "releases": {"1.0": []},
        "vulnerabilities": [
            {"id": "PYSEC-2099-1", "aliases": ["CVE-2099-0001"], "fixed_in": ["1.1"]},
            {"id": "PYSEC-2099-2", "aliases": [], "fixed_in": [], "withdrawn": "2099-01-02"},
        ],
    },
    "old": {"info": {"version": "9.0"}, "releases": {"1.0": [], "9.0": []}},
}
RELEASES = {("old", "1.0"): {"vulnerabilities": [{"id": "GHSA-old", "aliases": []}]}}


class Index(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        parts = self.path.strip("/").split("/")  # pypi/NAME/json or pypi/NAME/VERSION/json
        body = None
        if len(parts) == 3:
            body = PROJECTS.get(parts[1])
        elif len(parts) == 4:
            body = RELEASES.get((parts[1], parts[2]))
        if body is None:
            self.send_error(404)
            return
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def index() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Index)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/pypi"
    server.shutdown()


def _load(monkeypatch: pytest.MonkeyPatch, index: str, installed: list[tuple[str, str]]) -> Any:
    monkeypatch.setenv("AUDIT_INDEX", index)
    spec = importlib.util.spec_from_file_location("audit", ROOT / "security" / "audit.py")
    assert spec and spec.loader
    module: ModuleType = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "audit", module)  # dataclasses look their module up
    spec.loader.exec_module(module)
    monkeypatch.setattr(module, "installed", lambda: installed)
    return module


def test_a_vulnerable_latest_release_fails_the_audit(
    index: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: Any
) -> None:
    audit = _load(monkeypatch, index, [("safe", "2.0"), ("leaky", "1.0")])
    monkeypatch.setattr(audit, "EXCEPTIONS", tmp_path / "none.md")
    assert audit.main([]) == 1
    out = capsys.readouterr().out
    assert "VULNERABLE   leaky 1.0: PYSEC-2099-1 (CVE-2099-0001); fixed in 1.1" in out
    assert "PYSEC-2099-2" not in out  # withdrawn advisories do not count
    assert "2 of 2 distributions audited, 1 unexplained finding(s)" in out


def test_an_explained_finding_passes(
    index: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    audit = _load(monkeypatch, index, [("leaky", "1.0")])
    explained = tmp_path / "exceptions.md"
    explained.write_text("## 2099-01-01: CVE-2099-0001 in leaky, not reachable here\n")
    monkeypatch.setattr(audit, "EXCEPTIONS", explained)
    assert audit.main([]) == 0


def test_older_releases_use_the_release_data_or_say_they_were_not_audited(
    index: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    audit = _load(monkeypatch, index, [])
    old = audit.audit_one("old", "1.0")
    assert old.audited and [v["id"] for v in old.vulnerabilities] == ["GHSA-old"]
    missing = audit.audit_one("old", "2.0")
    assert not missing.audited and "older than the latest release (9.0)" in missing.how
    assert audit.audit_one("nowhere", "1.0").how == "not on PyPI"


def test_an_unreachable_index_is_not_a_clean_audit(
    monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    audit = _load(monkeypatch, "http://127.0.0.1:9/pypi", [("safe", "2.0")])
    assert audit.main([]) == 2
    assert "0 of 1 distributions audited" in capsys.readouterr().out
