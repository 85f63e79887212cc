"""Signed fan/ops tokens (JWT, HS256): mint for development, verify at every door."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass

import jwt

from cluster.errors import AuthError, InvalidInput

ROLES = ("fan", "ops")
ALGORITHM = "HS256"
_USER_PATTERN = re.compile(r"^[A-Za-z0-9_.@:-]{1,64}$")


@dataclass(frozen=True)
class Claims:
    user: str
    role: str
    exp: float
    rooms: frozenset[str] | None = None  # private rooms this token may join

    @property
    def is_ops(self) -> bool:
        return self.role == "ops"


def mint(secret: str, user: str, *, role: str = "fan", rooms: list[str] | None = None,
         ttl_s: int = 3600, now: float | None = None) -> str:
    """A token for ``user``; raises InvalidInput for an unusable user, role or ttl."""
    if not _USER_PATTERN.match(user):
        raise InvalidInput("user must be 1-64 of A-Z a-z 0-9 _ . @ : -", code="invalid_user")
    if role not in ROLES:
        raise InvalidInput(f"role must be one of {', '.join(ROLES)}", code="invalid_role")
    if ttl_s <= 0:
        raise InvalidInput("ttl must be positive seconds", code="invalid_ttl")
    now = time.time() if now is None else now
    claims: dict = {"sub": user, "role": role, "iat": int(now), "exp": int(now + ttl_s)}
    if rooms:
        claims["rooms"] = sorted(set(rooms))
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


def verify(secret: str, token: str | None, *, now: float | None = None) -> Claims:
    """Claims of a valid token; AuthError saying why otherwise."""
    if not token:
        raise AuthError("missing token")
    try:
        raw = jwt.decode(
            token, secret, algorithms=[ALGORITHM],
            options={"require": ["sub", "exp"], "verify_exp": False},
        )
    except jwt.InvalidTokenError as e:
        raise AuthError(f"invalid token: {e}") from None
    # exp checked here, against an injectable clock, rather than by PyJWT's time.time().
    now = time.time() if now is None else now
    if not isinstance(raw["exp"], (int, float)) or raw["exp"] <= now:
        raise AuthError("token expired")
    user, role, rooms = raw["sub"], raw.get("role", "fan"), raw.get("rooms")
    if not isinstance(user, str) or not _USER_PATTERN.match(user):
        raise AuthError("invalid token: bad sub")
    if role not in ROLES:
        raise AuthError("invalid token: bad role")
    if rooms is not None and not (isinstance(rooms, list) and all(isinstance(r, str) for r in rooms)):
        raise AuthError("invalid token: rooms must be a list of strings")
    return Claims(user=user, role=role, exp=float(raw["exp"]),
                  rooms=frozenset(rooms) if rooms is not None else None)
