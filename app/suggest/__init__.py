"""Offline suggestion engine: similar cards, likely duplicates and proposed groups.

The package re-exports the public API of ``engine``; importing it does not
load the embedding model, which happens on the first call that needs vectors.
"""

from app.suggest.engine import (
    Item,
    Suggestion,
    duplicate_pairs,
    similar,
    suggest_clusters,
)

__all__ = ["Item", "Suggestion", "duplicate_pairs", "similar", "suggest_clusters"]
