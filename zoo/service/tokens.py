"""API tokens: ``zoo_<id>_<secret>``, stored as the sha256 of the secret only.

The id finds the row; the secret's hash is compared in constant time. Secrets
carry 256 random bits, so a plain sha256 is enough (no password stretching
needed). Scopes nest: admin includes write, write includes read.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from dataclasses import dataclass

import sqlalchemy as sa

from zoo import db, errors

SCOPES = ("read", "write", "admin")
_TOKEN_RE = re.compile(r"^zoo_([0-9a-f]{12})_([A-Za-z0-9_-]{43})$")
_DUMMY_HASH = hashlib.sha256(b"zoo: no such token").hexdigest()
_TOUCH_EVERY_S = 60.0  # last_used_at is written at most this often per token


@dataclass(frozen=True)
class TokenInfo:
    id: str
    scope: str
    name: str | None
    created_at: float
    last_used_at: float | None = None
    revoked_at: float | None = None

    def allows(self, scope: str) -> bool:
        return SCOPES.index(self.scope) >= SCOPES.index(scope)


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def create_token(engine: sa.Engine, scope: str, name: str | None = None) -> tuple[str, TokenInfo]:
    """A new token (shown once, never stored) and its record."""
    if scope not in SCOPES:
        raise errors.UsageError(f"unknown scope {scope!r}", hint=f"scopes: {', '.join(SCOPES)}")
    token_id, secret = secrets.token_hex(6), secrets.token_urlsafe(32)
    info = TokenInfo(token_id, scope, name, time.time())
    with engine.begin() as conn:
        conn.execute(sa.insert(db.tokens).values(id=token_id, secret_sha256=_hash(secret), scope=scope, name=name,
                                                 created_at=info.created_at))
    return f"zoo_{token_id}_{secret}", info


def verify_token(engine: sa.Engine, token: str) -> TokenInfo:
    """The live token ``token`` names; UnauthorizedError otherwise."""
    match = _TOKEN_RE.match(token)
    token_id, secret = match.groups() if match else ("", token)
    with engine.connect() as conn:
        row = conn.execute(sa.select(db.tokens).where(db.tokens.c.id == token_id)).mappings().first() if match else None
    stored = row["secret_sha256"] if row is not None else _DUMMY_HASH
    if not hmac.compare_digest(_hash(secret), stored) or row is None or row["revoked_at"] is not None:
        raise errors.UnauthorizedError("the token is not valid (unknown, malformed or revoked)",
                                       hint="create one with `zoo token create --scope SCOPE` and send it as "
                                            "'Authorization: Bearer TOKEN'")
    info = _info(row)
    now = time.time()
    if (info.last_used_at or 0) < now - _TOUCH_EVERY_S:
        with engine.begin() as conn:
            conn.execute(sa.update(db.tokens).where(db.tokens.c.id == token_id).values(last_used_at=now))
    return info


def list_tokens(engine: sa.Engine) -> list[TokenInfo]:
    with engine.connect() as conn:
        rows = conn.execute(sa.select(db.tokens).order_by(db.tokens.c.created_at)).mappings().all()
    return [_info(r) for r in rows]


def revoke_token(engine: sa.Engine, token_id: str) -> TokenInfo:
    with engine.begin() as conn:
        conn.execute(sa.update(db.tokens).where((db.tokens.c.id == token_id) & db.tokens.c.revoked_at.is_(None))
                     .values(revoked_at=time.time()))  # revoking twice keeps the first time
        row = conn.execute(sa.select(db.tokens).where(db.tokens.c.id == token_id)).mappings().first()
    if row is None:
        raise errors.NotFoundError(f"no token {token_id!r}", hint="see `zoo token list`")
    return _info(row)


def _info(row: dict) -> TokenInfo:
    return TokenInfo(row["id"], row["scope"], row["name"], row["created_at"], row["last_used_at"], row["revoked_at"])
