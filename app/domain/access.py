"""Secrets: participant tokens (random, stored as SHA-256), join codes (40
bits from an alphabet without look-alikes), and the facilitator and projector
keys, derived from the server secret with HMAC over the workshop's uid, the
role and a rotation counter, so the organizer can see them again and rotate
them without the database ever holding them.

The uid (``Workshop.uid``, 128 random bits) and not the id: ids count up and,
restored from a backup or given again by a database, would make a deleted
workshop's links open the next workshop with the same id."""

from __future__ import annotations

import hashlib
import hmac
import secrets

CODE_ALPHABET = "23456789ABCDEFGHJKLMNPQRSTUVWXYZ"  # 32 symbols, no 0/O/1/I
CODE_LENGTH = 8  # 8 x 5 bits = 40 bits


def new_token() -> str:
    return secrets.token_urlsafe(24)  # 192 bits


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def new_join_code() -> str:
    return "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))


def normalize_code(code: str) -> str:
    """Codes are case-insensitive when typed; spaces and dashes are ignored."""
    return "".join(ch for ch in code.upper() if ch.isalnum())[:16]


def derive_key(secret: str, *, uid: str, role: str, rotation: int) -> str:
    if not uid:
        raise ValueError("a workshop without a uid has no keys")
    msg = f"{uid}:{role}:{rotation}".encode()
    digest = hmac.new(secret.encode(), msg, hashlib.sha256).digest()
    return digest[:20].hex()  # 160 bits


def check_key(secret: str, key: str | None, *, uid: str, role: str, rotation: int) -> bool:
    if not key or not key.isascii() or len(key) > 200 or not uid:
        # compare_digest refuses non-ASCII str; a key is hex anyway.
        return False
    expected = derive_key(secret, uid=uid, role=role, rotation=rotation)
    return hmac.compare_digest(expected, key.strip().lower())
