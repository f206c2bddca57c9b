"""Affiliation entries and the groups used for aggregate breakdowns.

An entry is free text chosen by the organizer. ``"Group: Name"`` puts the
entry in a group (``"Field operation: OSCE Mission to Serbia"``); an entry
without a colon is its own group (``"ODIHR"``). Breakdowns are only ever
shown for groups of at least ``MIN_GROUP`` people (Chatham House).
"""

from __future__ import annotations

MIN_GROUP = 3
OTHER = "Other"


def group_of(affiliation: str) -> str:
    affiliation = affiliation.strip()
    if not affiliation:
        return OTHER
    head, sep, _ = affiliation.partition(":")
    return head.strip() if sep else affiliation


def merge_small_groups(counts: dict[str, int], minimum: int = MIN_GROUP) -> dict[str, int]:
    """Fold groups smaller than ``minimum`` into "Other"; if "Other" itself
    stays below the minimum it is still shown only as part of a total."""
    merged: dict[str, int] = {}
    for group, n in counts.items():
        key = group if n >= minimum else OTHER
        merged[key] = merged.get(key, 0) + n
    return merged
