"""Audit the installed Python distributions against PyPI's vulnerability data.

pip-audit asks PyPI's per-release endpoint (/pypi/NAME/VERSION/json), which
the package index this project builds from does not serve (404 for every
release), so pip-audit skips every package. PyPI's per-project endpoint
(/pypi/NAME/json) does answer, and its ``vulnerabilities`` list is the one for
the project's latest release (the OSV data pip-audit itself reads). So:

- installed version == latest release: audited from that list;
- otherwise: the per-release endpoint is tried, as pip-audit does;
- neither answers: listed as not audited, with the reason.

A finding fails the audit unless security/pip-audit-exceptions.md names its
id. Not being able to reach PyPI at all fails it too: an audit that checked
nothing must not look clean.

    python security/audit.py            # table and exit status
    python security/audit.py --json     # machine-readable
"""

from __future__ import annotations

import argparse
import importlib.metadata as md
import json
import os
import re
import sys
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

INDEX = os.environ.get("AUDIT_INDEX", "https://pypi.org/pypi")
EXCEPTIONS = Path(__file__).with_name("pip-audit-exceptions.md")
OWN = {"lessons-workshop"}


@dataclass
class Result:
    name: str
    version: str
    audited: bool = False
    how: str = ""
    vulnerabilities: list[dict[str, Any]] = field(default_factory=list)


def _get(url: str) -> dict[str, Any] | None:
    if not url.startswith(("https://", "http://")):
        raise ValueError(f"not an http(s) index: {url}")
    for _ in range(3):
        try:
            with urllib.request.urlopen(url, timeout=20) as response:  # noqa: S310 (checked above)
                data: dict[str, Any] = json.load(response)
                return data
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                return None
        except (urllib.error.URLError, TimeoutError, OSError):
            continue
    raise ConnectionError(url)


def _vulns(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {
            "id": v.get("id", "?"),
            "aliases": v.get("aliases", []),
            "fixed_in": v.get("fixed_in", []),
            "withdrawn": v.get("withdrawn"),
        }
        for v in entries
        if not v.get("withdrawn")
    ]


def audit_one(name: str, version: str) -> Result:
    result = Result(name, version)
    try:
        project = _get(f"{INDEX}/{name}/json")
        if project is None:
            result.how = "not on PyPI"
            return result
        if project["info"]["version"] == version:
            result.audited, result.how = True, "latest release"
            result.vulnerabilities = _vulns(project.get("vulnerabilities", []))
            return result
        release = _get(f"{INDEX}/{name}/{version}/json")
        if release is not None:
            result.audited, result.how = True, "release data"
            result.vulnerabilities = _vulns(release.get("vulnerabilities", []))
        else:
            latest = project["info"]["version"]
            result.how = f"older than the latest release ({latest}); no data for {version}"
    except ConnectionError as exc:
        result.how = f"PyPI did not answer ({exc})"
    return result


def installed() -> list[tuple[str, str]]:
    seen: dict[str, str] = {}
    for dist in md.distributions():
        name = re.sub(r"[-_.]+", "-", dist.metadata["Name"]).lower()
        if name not in OWN:
            seen[name] = dist.version
    return sorted(seen.items())


def excepted_ids() -> set[str]:
    if not EXCEPTIONS.exists():
        return set()
    return set(re.findall(r"\b(?:PYSEC|GHSA|CVE|OSV)-[\w-]+", EXCEPTIONS.read_text()))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda nv: audit_one(*nv), installed()))
    allowed = excepted_ids()
    findings = [
        (r, v)
        for r in results
        for v in r.vulnerabilities
        if not ({v["id"], *v["aliases"]} & allowed)
    ]
    audited = [r for r in results if r.audited]
    if args.json:
        print(json.dumps([asdict(r) for r in results], indent=2))
    else:
        for r in results:
            if not r.audited:
                print(f"not audited  {r.name} {r.version}: {r.how}")
        for r, v in findings:
            fixed = ", ".join(v["fixed_in"]) or "no fix yet"
            aliases = ", ".join(v["aliases"])
            print(f"VULNERABLE   {r.name} {r.version}: {v['id']} ({aliases}); fixed in {fixed}")
        print(
            f"{len(audited)} of {len(results)} distributions audited, "
            f"{len(findings)} unexplained finding(s)"
        )
    if not audited:
        print("nothing could be audited: PyPI unreachable?", file=sys.stderr)
        return 2
    return 1 if findings else 0


if __name__ == "__main__":
    sys.exit(main())
