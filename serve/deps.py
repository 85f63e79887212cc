"""FastAPI dependencies of the HTTP API: the replica's shared state, and who is calling.

Routes declare ``Depends(require_ops)`` (ops endpoints) or ``Depends(require_user)``
(any valid token). A fan token on an ops route gets 403 ``forbidden``; no or a bad
token gets 401 ``unauthorized``. Both are JSON ``{"code", "message"}`` bodies.
"""

from __future__ import annotations

from dataclasses import dataclass

import redis.asyncio as aredis
from fastapi import Request

from cluster import tokens
from cluster.errors import AuthError, ForbiddenError, Unavailable
from cluster.settings import Settings


@dataclass
class ApiState:
    settings: Settings
    redis: aredis.Redis


# Set once per API replica by serve.api.Api.__init__. A module global rather than
# app.state: Serve pickles the FastAPI app into the replica, so the app object the
# routes see is a copy that __init__ never touches.
_state: ApiState | None = None


def install(state: ApiState) -> None:
    global _state
    _state = state


def api_state() -> ApiState:
    if _state is None:
        raise Unavailable("API replica is still starting")
    return _state


def require_user(request: Request) -> tokens.Claims:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise AuthError("send 'Authorization: Bearer <token>' (mint one with `fandom token`)")
    return tokens.verify(api_state().settings.jwt_secret, token.strip())


def require_ops(request: Request) -> tokens.Claims:
    claims = require_user(request)
    if not claims.is_ops:
        raise ForbiddenError("this endpoint needs a token with role=ops")
    return claims
