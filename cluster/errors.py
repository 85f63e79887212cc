"""Errors as values with codes.

    FandomError(code, message, status)     every error we raise on purpose
    ├── ConfigError      bad settings or config files         (config_invalid, 400)
    ├── AuthError        missing/invalid token                (unauthorized, 401)
    ├── ForbiddenError   valid token, wrong role or room      (forbidden, 403)
    ├── NotFoundError    no such job/concert/...              (<thing>_not_found, 404)
    ├── InvalidInput     request fails validation             (invalid_<what>, 422)
    ├── MediaError       a media source/output/ladder is unusable (source_*, output_*, 422)
    └── Unavailable      a backend (Redis, Ray) is down       (unavailable, 503)

``code`` is a stable snake_case string: HTTP APIs return ``{"code", "message"}``,
the CLI prints ``error[code]: message``. WebSocket codes live in ``cluster.codes``.
"""

from __future__ import annotations


class FandomError(Exception):
    code = "error"
    status = 500

    def __init__(self, message: str, *, code: str | None = None, status: int | None = None):
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        if status is not None:
            self.status = status

    def to_json(self) -> dict[str, str]:
        return {"code": self.code, "message": self.message}


class ConfigError(FandomError):
    code, status = "config_invalid", 400


class AuthError(FandomError):
    code, status = "unauthorized", 401


class ForbiddenError(FandomError):
    code, status = "forbidden", 403


class NotFoundError(FandomError):
    code, status = "not_found", 404


class InvalidInput(FandomError):
    code, status = "invalid_input", 422


class Unavailable(FandomError):
    code, status = "unavailable", 503


class MediaError(FandomError):
    """A transcoding input or output problem; ``code`` says which (docs/transcoding.md)."""

    code, status = "media_error", 422

    def __reduce__(self):
        # Crosses process boundaries inside Ray task errors: keep code and status.
        return (_rebuild, (type(self), self.message, self.code, self.status))


def _rebuild(cls, message, code, status):
    return cls(message, code=code, status=status)
