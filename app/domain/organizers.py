"""Organizer accounts and their sessions (browser cookie or API bearer
token). Passwords are hashed with Argon2id (argon2-cffi's RFC 9106 low-memory
profile: 64 MiB, 3 iterations); tokens are stored as SHA-256 only. Sessions
expire after an idle time and an absolute lifetime."""

from __future__ import annotations

from datetime import timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlmodel import Session, col, select

from app.domain import access
from app.domain.errors import Conflict, Invalid, NotAuthenticated
from app.models import AuthSession, Organizer, nul_free, utcnow

_hasher = PasswordHasher()
# Verifying against a dummy hash when the name is unknown keeps the response
# time the same, so login does not reveal which names exist.
_DUMMY_HASH = _hasher.hash("not a password")
MIN_PASSWORD = 10


def any_organizer(session: Session) -> bool:
    return session.exec(select(Organizer.id).limit(1)).first() is not None


def by_name(session: Session, name: str) -> Organizer | None:
    if not nul_free(name):
        # No stored name holds one (see models.nul_free), and PostgreSQL would
        # refuse the query itself: a login answers as for any unknown name.
        return None
    return session.exec(select(Organizer).where(Organizer.name == name.strip())).first()


def add_organizer(session: Session, *, name: str, password: str) -> Organizer:
    name = name.strip()
    if not 1 <= len(name) <= 80:
        raise Invalid("The name must be 1-80 characters.", field="name")
    if len(password) < MIN_PASSWORD:
        raise Invalid(f"The password needs at least {MIN_PASSWORD} characters.", field="password")
    if len(password) > 1024:
        raise Invalid("The password is too long.", field="password")
    if by_name(session, name):
        raise Conflict(f"An organizer named {name!r} exists already.", field="name")
    org = Organizer(name=name, password_hash=_hasher.hash(password))
    session.add(org)
    session.flush()
    return org


def authenticate(session: Session, *, name: str, password: str) -> Organizer:
    org = by_name(session, name)
    try:
        _hasher.verify(org.password_hash if org else _DUMMY_HASH, password)
    except (VerificationError, InvalidHashError):
        org = None
    if org is None:
        raise NotAuthenticated("Wrong name or password.")
    if _hasher.check_needs_rehash(org.password_hash):
        org.password_hash = _hasher.hash(password)
        session.add(org)
    return org


def start_session(session: Session, *, organizer: Organizer, kind: str = "cookie") -> str:
    token = access.new_token()
    assert organizer.id is not None
    session.add(
        AuthSession(token_hash=access.hash_token(token), organizer_id=organizer.id, kind=kind)
    )
    return token


def resolve_session(
    session: Session, *, token: str, idle: timedelta, absolute: timedelta
) -> Organizer | None:
    row = session.exec(
        select(AuthSession).where(AuthSession.token_hash == access.hash_token(token))
    ).first()
    if row is None:
        return None
    now = utcnow()
    if now - row.last_seen_at > idle or now - row.created_at > absolute:
        session.delete(row)
        return None
    if now - row.last_seen_at > timedelta(minutes=1):
        row.last_seen_at = now
        session.add(row)
    return session.get(Organizer, row.organizer_id)


def end_session(session: Session, *, token: str) -> None:
    for row in session.exec(
        select(AuthSession).where(col(AuthSession.token_hash) == access.hash_token(token))
    ):
        session.delete(row)
