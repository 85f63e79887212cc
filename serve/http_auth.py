"""Who is calling the HTTP API: bearer-token dependencies for FastAPI routes.

Routes declare ``Depends(require_ops)`` (ops endpoints) or ``Depends(require_user)``
(any valid token). A fan token on an ops route gets 403 ``forbidden``; no or a bad
token gets 401 ``unauthorized``. Both are JSON ``{"code", "message"}`` bodies.
"""

from __future__ import annotations

from fastapi import Request

from cluster import tokens
from cluster.errors import AuthError, ForbiddenError
from cluster.settings import Settings


def settings_of(request: Request) -> Settings:
    return request.app.state.settings


def require_user(request: Request) -> tokens.Claims:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise AuthError("send 'Authorization: Bearer <token>' (mint one with `fandom token`)")
    return tokens.verify(settings_of(request).jwt_secret, token.strip())


def require_ops(request: Request) -> tokens.Claims:
    claims = require_user(request)
    if not claims.is_ops:
        raise ForbiddenError("this endpoint needs a token with role=ops")
    return claims
