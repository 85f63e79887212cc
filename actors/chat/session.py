"""One connection's chat session: frames in, actions out. No I/O, no clock of its own.

The adapter (serve/ws_gateway.py) feeds every client frame to ``Session.receive``
with the current time and carries out the returned actions in order.
"""

from __future__ import annotations

from dataclasses import dataclass

from actors.chat import protocol
from actors.chat.protocol import PRIVATE_PREFIX, Join, Leave, Ping, Reject, Send
from cluster.codes import CloseCode, ErrorCode
from cluster.tokens import Claims


@dataclass(frozen=True, slots=True)
class Limits:
    max_text_len: int = 1000
    max_frame_bytes: int = 8192
    rate_per_s: float = 10.0
    rate_burst: int = 20
    max_rooms: int = 16

    @classmethod
    def from_settings(cls, s) -> Limits:
        return cls(s.max_text_len, s.max_frame_bytes, s.rate_per_s, s.rate_burst, s.max_rooms)


@dataclass(frozen=True, slots=True)
class Reply:
    frame: str


@dataclass(frozen=True, slots=True)
class Close:
    code: CloseCode
    reason: str


Action = Reply | Close | Join | Leave | Send


class TokenBucket:
    """Classic token bucket; ``take`` refills from elapsed time, then spends one token."""

    __slots__ = ("rate", "burst", "tokens", "at")

    def __init__(self, rate: float, burst: int, now: float):
        self.rate, self.burst, self.tokens, self.at = rate, burst, float(burst), now

    def take(self, now: float) -> bool:
        if now > self.at:
            self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
            self.at = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


class Session:
    """Validates, rate-limits and authorizes every frame of one authenticated fan."""

    __slots__ = ("claims", "limits", "rooms", "bucket", "strikes", "closed")

    def __init__(self, claims: Claims, limits: Limits, now: float):
        self.claims = claims
        self.limits = limits
        self.rooms: set[str] = set()
        self.bucket = TokenBucket(limits.rate_per_s, limits.rate_burst, now)
        # Frames refused in a row by the bucket; past the burst size the peer is a flood.
        self.strikes = 0
        self.closed = False

    @property
    def user(self) -> str:
        return self.claims.user

    def receive(self, frame: str | bytes, now: float) -> list[Action]:
        """Actions for one client frame (text as str, binary as bytes)."""
        if self.closed:
            return []
        if now >= self.claims.exp:
            return self._close(CloseCode.UNAUTHORIZED, "token expired")
        if _too_big(frame, self.limits.max_frame_bytes):
            return self._close(CloseCode.FRAME_TOO_BIG,
                               f"frame over {self.limits.max_frame_bytes} bytes")
        if not self.bucket.take(now):
            self.strikes += 1
            if self.strikes > self.limits.rate_burst:
                return self._close(CloseCode.FLOOD, "flood: kept sending while rate limited")
            return [Reply(protocol.error(ErrorCode.RATE_LIMITED, _peek_id(frame)))]
        self.strikes = 0
        if isinstance(frame, bytes):
            return [Reply(protocol.error(ErrorCode.BINARY_FRAME))]
        cmd = protocol.parse(frame, self.limits.max_text_len)
        if isinstance(cmd, Reject):
            return [Reply(protocol.error(cmd.code, cmd.id))]
        if isinstance(cmd, Send):
            if cmd.room not in self.rooms:
                return [Reply(protocol.error(ErrorCode.NOT_JOINED, cmd.id))]
            return [cmd]
        if isinstance(cmd, Ping):
            return [Reply(protocol.pong())]
        if isinstance(cmd, Leave):
            if cmd.room not in self.rooms:
                return [Reply(protocol.error(ErrorCode.NOT_JOINED))]
            self.rooms.discard(cmd.room)
            return [cmd, Reply(protocol.left(cmd.room))]
        return self._join(cmd)

    def _join(self, cmd: Join) -> list[Action]:
        if cmd.room in self.rooms:
            return [Reply(protocol.error(ErrorCode.ALREADY_JOINED))]
        if len(self.rooms) >= self.limits.max_rooms:
            return [Reply(protocol.error(ErrorCode.TOO_MANY_ROOMS))]
        if cmd.room.startswith(PRIVATE_PREFIX) and not self.may_join_private(cmd.room):
            return [Reply(protocol.error(ErrorCode.FORBIDDEN_ROOM))]
        self.rooms.add(cmd.room)
        return [cmd]

    def may_join_private(self, room: str) -> bool:
        return self.claims.is_ops or (self.claims.rooms is not None and room in self.claims.rooms)

    def join_failed(self, room: str) -> None:
        """The adapter could not complete a Join it was given; forget the room."""
        self.rooms.discard(room)

    def _close(self, code: CloseCode, reason: str) -> list[Action]:
        self.closed = True
        return [Close(code, reason)]


def _too_big(frame: str | bytes, limit: int) -> bool:
    # A str of n characters is at most 4n UTF-8 bytes; only encode when it could matter.
    if isinstance(frame, bytes) or len(frame) > limit:
        return len(frame) > limit
    return len(frame) * 4 > limit and len(frame.encode()) > limit


def _peek_id(frame: str | bytes) -> str | None:
    """The client id of a rate-limited send, so the client knows which send to retry."""
    if isinstance(frame, bytes) or '"id"' not in frame:
        return None
    return getattr(protocol.parse(frame, max_text_len=1 << 30), "id", None)
