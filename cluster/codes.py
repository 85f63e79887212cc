"""WebSocket error and close codes of the chat protocol (v1): the one table.

``ErrorCode`` values travel in ``{"op":"error","code":C,...}`` frames; the connection
stays open and the client may correct itself. ``CloseCode`` values end the connection.
docs/protocol.md renders this table; a test keeps the two in step.
"""

from __future__ import annotations

from enum import IntEnum


class ErrorCode(IntEnum):
    BAD_FRAME = 100        # not JSON, not an object, or a field of the wrong type
    BINARY_FRAME = 101     # binary frames are not part of the protocol: send JSON text
    UNKNOWN_OP = 102       # "op" is not join, leave, send or ping
    BAD_ROOM = 103         # room name must match ROOM_PATTERN
    NOT_JOINED = 104       # send/leave for a room this connection has not joined
    TEXT_TOO_LONG = 105    # text longer than FANDOM_MAX_TEXT_LEN characters (or empty)
    RATE_LIMITED = 106     # frame dropped by the token bucket; slow down (flood closes 4008)
    FORBIDDEN_ROOM = 107   # private room ($name) not listed in the token's "rooms" claim
    TOO_MANY_ROOMS = 108   # already in FANDOM_MAX_ROOMS rooms; leave one first
    BAD_ID = 109           # send needs "id": a string of 1-64 characters
    UNAVAILABLE = 110      # backend hiccup; retry the same send with the same id (safe)
    ALREADY_JOINED = 111   # join for a room this connection is already in
    BAD_SINCE = 112        # since must be an integer >= 0 and epoch a string


class CloseCode(IntEnum):
    SERVICE_RESTART = 1012  # replica draining or restarting: reconnect, join with since
    UNAUTHORIZED = 4001     # token missing, forged, expired, or not for this service
    FLOOD = 4008            # kept sending after rate_limited errors
    FRAME_TOO_BIG = 4009    # frame over FANDOM_MAX_FRAME_BYTES
    SLOW_CONSUMER = 4010    # did not read fast enough; reconnect and recover with since
    PEER_SILENT = 4011      # a keepalive ping went unanswered for two ping intervals
    SERVER_ERROR = 1011     # unexpected server failure; reconnect


ERROR_REASONS: dict[ErrorCode, str] = {
    ErrorCode.BAD_FRAME: "frame is not a JSON object with valid fields",
    ErrorCode.BINARY_FRAME: "binary frames are not accepted; send JSON text frames",
    ErrorCode.UNKNOWN_OP: "unknown op",
    ErrorCode.BAD_ROOM: "room must be 1-64 of A-Z a-z 0-9 _ . : - (optionally $-prefixed)",
    ErrorCode.NOT_JOINED: "join the room first",
    ErrorCode.TEXT_TOO_LONG: "text must be 1..max_text_len characters",
    ErrorCode.RATE_LIMITED: "rate limited; slow down",
    ErrorCode.FORBIDDEN_ROOM: "this token may not join that room",
    ErrorCode.TOO_MANY_ROOMS: "too many rooms on one connection; leave one first",
    ErrorCode.BAD_ID: "send needs an id: a string of 1-64 characters",
    ErrorCode.UNAVAILABLE: "temporarily unavailable; retry with the same id",
    ErrorCode.ALREADY_JOINED: "already joined",
    ErrorCode.BAD_SINCE: "since must be an integer >= 0 and epoch a string",
}
