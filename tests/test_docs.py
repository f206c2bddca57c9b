"""The README documents every setting and every CLI command."""

from __future__ import annotations

from pathlib import Path

import click

from app.cli import main
from app.config import Settings

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()


def _commands(group: click.Group, prefix: str = "lessons") -> list[str]:
    out = []
    for name, cmd in group.commands.items():
        full = f"{prefix} {name}"
        out.append(full)
        if isinstance(cmd, click.Group):
            out.extend(_commands(cmd, full))
    return out


def test_every_setting_is_documented() -> None:
    missing = []
    for name, field in Settings.model_fields.items():
        env = f"LESSONS_{name.upper()}"
        aliases = getattr(field.validation_alias, "choices", None) or []
        if env not in README and not any(str(a) in README for a in aliases):
            missing.append(env)
    assert missing == []


def test_every_cli_command_is_documented() -> None:
    missing = [c for c in _commands(main) if f"`{c}" not in README]
    assert missing == []
