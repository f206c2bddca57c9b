"""Workshop templates are data: YAML files in ``app/templates_data/``. A new
template is a new file, no code."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from app.domain.errors import Invalid
from app.models import CARD_KINDS

TEMPLATES_DIR = Path(__file__).resolve().parent.parent / "templates_data"


@dataclass(frozen=True)
class Template:
    name: str
    title: str
    description: str
    hosted_by: str
    settings: dict[str, Any]
    focus_areas: list[dict[str, Any]]
    affiliations: list[str] = field(default_factory=list)


def _load(path: Path) -> Template:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    areas = []
    for fa in data["focus_areas"]:
        kinds = fa.get("kinds") or list(CARD_KINDS)
        assert set(kinds) <= set(CARD_KINDS), f"{path.name}: unknown kind in {kinds}"
        areas.append({"title": fa["title"], "prompt": fa.get("prompt", "").strip(), "kinds": kinds})
    return Template(
        name=data["name"],
        title=data["title"],
        description=data.get("description", "").strip(),
        hosted_by=data.get("hosted_by", ""),
        settings=data.get("settings", {}),
        focus_areas=areas,
        affiliations=list(data.get("affiliations") or DEFAULT_AFFILIATIONS),
    )


DEFAULT_AFFILIATIONS = [
    "OSCE Secretariat",
    "ODIHR",
    "Field operation: OSCE field operation",
    "Other OSCE institution: Other OSCE institution",
    "External partner: External partner",
    "Other",
]


@lru_cache
def all_templates() -> dict[str, Template]:
    found = [_load(p) for p in sorted(TEMPLATES_DIR.glob("*.yaml"))]
    return {t.name: t for t in found}


def get_template(name: str) -> Template:
    try:
        return all_templates()[name]
    except KeyError:
        known = ", ".join(all_templates())
        raise Invalid(f"Unknown template {name!r}. Known: {known}.", field="template") from None
