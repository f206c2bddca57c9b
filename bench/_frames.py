"""What the app's websocket frames say: the workshop seq a frame carries (the
``data-seq`` of ``#ws-status``), its top-level ``hx-swap-oob`` fragments, the
cards and dots on each board, and, over a client pool's result, how long each
action took to reach every socket."""

from __future__ import annotations

import re
from typing import Any

import numpy as np

_SEQ = re.compile(r'id="ws-status"[^>]*?data-seq="(\d+)"')
_DIV = re.compile(r"<(/?)div\b")
_TOP_ID = re.compile(r'<div id="([\w-]+)"')
_CARD = re.compile(r'<article class="card[^"]*" id="card-(\d+)"(.*?)</article>', re.S)
_TITLE = re.compile(r'<h4 id="card-\d+-title">([^<]*)</h4>')
_TOTAL = re.compile(r'<p class="totals"><strong>(\d+)</strong>')


def frame_seq(text: str) -> int | None:
    """The workshop seq a board or facilitator frame carries (#ws-status data-seq)."""
    m = _SEQ.search(text, 0, 4000) or _SEQ.search(text)
    return int(m.group(1)) if m else None


def fragments(text: str) -> dict[str, str]:
    """The top-level ``<div id=...>`` fragments of a frame, by id. User text is
    escaped, so a ``<div`` in the markup is always a real element."""
    out: dict[str, str] = {}
    pos = 0
    while (m := _TOP_ID.search(text, pos)) is not None:
        depth = 0
        for d in _DIV.finditer(text, m.start()):
            depth += -1 if d.group(1) else 1
            if depth == 0:
                end = text.index(">", d.end()) + 1
                break
        else:
            raise ValueError(f"unbalanced fragment {m.group(1)!r}")
        out[m.group(1)] = text[m.start() : end]
        pos = end
    return out


def parse_frame(text: str) -> dict[str, Any]:
    """seq, fragment ids, and per focus area {card_id: (title, dots or None)}."""
    frags = fragments(text)
    areas: dict[int, dict[int, tuple[str, int | None]]] = {}
    for fid, html in frags.items():
        if not fid.startswith("fa-board-"):
            continue
        cards: dict[int, tuple[str, int | None]] = {}
        for m in _CARD.finditer(html):
            t = _TITLE.search(m.group(2))
            d = _TOTAL.search(m.group(2))
            cards[int(m.group(1))] = (t.group(1) if t else "", int(d.group(1)) if d else None)
        areas[int(fid.removeprefix("fa-board-"))] = cards
    return {"seq": frame_seq(text), "size": len(text), "ids": sorted(frags), "areas": areas}


def action_masks(frames: list[dict[str, Any]], actions: list[dict[str, Any]]) -> list[int]:
    """For each distinct frame, a bit mask of the actions whose effect it shows.

    An action is {"kind": "card", "title": T} (a card with that title is on the
    board) or {"kind": "vote", "card": C, "k": K} (card C shows at least K dots)."""
    by_title = {a["title"]: i for i, a in enumerate(actions) if a["kind"] == "card"}
    votes: dict[int, list[tuple[int, int]]] = {}
    for i, a in enumerate(actions):
        if a["kind"] == "vote":
            votes.setdefault(a["card"], []).append((a["k"], i))
    cumulative: dict[int, list[int]] = {}
    for card, ks in votes.items():
        top = max(k for k, _ in ks)
        bits = [0] * (top + 1)
        for k, i in ks:
            bits[k] |= 1 << i
        for d in range(1, top + 1):
            bits[d] |= bits[d - 1]
        cumulative[card] = bits
    masks = []
    for info in frames:
        mask = 0
        for cards in info["areas"].values():
            for card_id, (title, dots) in cards.items():
                i = by_title.get(title)
                if i is not None:
                    mask |= 1 << i
                cum = cumulative.get(card_id)
                if cum and dots:
                    mask |= cum[min(dots, len(cum) - 1)]
        masks.append(mask)
    return masks


def arrivals(result: dict[str, Any], actions: list[dict[str, Any]]) -> dict[str, Any]:
    """Latency from each action's send time to its first arrival on every socket
    (a numpy array over all (socket, action) pairs), and what never arrived."""
    masks = action_masks(result["frames"], actions)
    sent = [a["t"] for a in actions]
    everything = (1 << len(actions)) - 1
    lat: list[float] = []
    missing_pairs = 0
    missing_sockets = 0
    for times, kids in zip(result["times"], result["kids"], strict=True):
        seen = 0
        for t, kid in zip(times, kids, strict=True):
            new = masks[kid] & ~seen
            if not new:
                continue
            seen |= new
            while new:
                low = new & -new
                lat.append(t - sent[low.bit_length() - 1])
                new ^= low
        left = everything & ~seen
        if left:
            missing_sockets += 1
            missing_pairs += left.bit_count()
    return {
        "lat": np.asarray(lat, dtype=float),
        "missing_pairs": missing_pairs,
        "missing_sockets": missing_sockets,
    }
