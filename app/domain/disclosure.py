"""Disclosure control: the one rule every breakdown by affiliation follows
(results API, board, projector, report page, every export format, the
archive). Under the Chatham House rule no published figure may let anyone
work out what a group of fewer than ``K`` people did.

The rule, after cell suppression as statistical offices do it (sdcTable,
tau-argus): *primary* suppression folds every group of fewer than ``K``
people into "Other"; *complementary* suppression then folds the smallest
remaining groups into "Other" too, until "Other" is either empty or holds at
least ``K`` people. Every figure is then published for the folded labels
only, and a breakdown always adds up to its total, so nothing can be
computed as "total minus the groups shown": the remainder is itself a
published label of at least ``K`` people. When everything folds into "Other"
no breakdown is published at all (it would only repeat the total).

Sizes are counted per focus area for votes (the people who voted there) and
per workshop for participants, which is where the figures are published."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from app.domain.affiliations import MIN_GROUP, OTHER

K = MIN_GROUP


def labels(sizes: Mapping[str, int], k: int = K) -> dict[str, str]:
    """Group -> the label its figures are published under (itself, or
    "Other"). ``sizes`` counts distinct people per group."""
    out = {g: (g if n >= k and g != OTHER else OTHER) for g, n in sizes.items()}
    other = sum(sizes[g] for g, label in out.items() if label == OTHER)
    named = sorted((g for g, label in out.items() if label != OTHER), key=lambda g: (sizes[g], g))
    while 0 < other < k and named:
        smallest = named.pop(0)
        out[smallest] = OTHER
        other += sizes[smallest]
    return out


def published(sizes: Mapping[str, int], k: int = K) -> list[str]:
    """The labels a breakdown shows, named groups first and "Other" last;
    empty when there would be nothing but "Other"."""
    shown = set(labels(sizes, k).values())
    if shown <= {OTHER}:
        return []
    return sorted(shown, key=lambda g: (g == OTHER, g))


def breakdown(
    values: Iterable[tuple[str, int]], sizes: Mapping[str, int], k: int = K
) -> list[tuple[str, int]]:
    """Sum ``(group, value)`` pairs by published label, for every published
    label (zeros included, so a missing label tells nothing either)."""
    mapping = labels(sizes, k)
    shown = published(sizes, k)
    totals = dict.fromkeys(shown, 0)
    if not shown:
        return []
    for group, value in values:
        totals[mapping.get(group, OTHER)] += value
    return [(g, totals[g]) for g in shown]
