"""Chat protocol v1: client frames parsed into commands, server frames encoded.

No I/O. Parsing returns a command or a ``Reject`` value; it never raises on peer input.
docs/protocol.md is the user-facing description of everything here.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from cluster.codes import ERROR_REASONS, ErrorCode

ROOM_PATTERN = re.compile(r"^\$?[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$")
MAX_ID_LEN = 64
PRIVATE_PREFIX = "$"  # rooms named "$..." need the token's "rooms" claim


@dataclass(frozen=True, slots=True)
class Join:
    room: str
    since: int | None = None
    epoch: str | None = None


@dataclass(frozen=True, slots=True)
class Leave:
    room: str


@dataclass(frozen=True, slots=True)
class Send:
    room: str
    id: str
    text: str


@dataclass(frozen=True, slots=True)
class Ping:
    pass


@dataclass(frozen=True, slots=True)
class Reject:
    code: ErrorCode
    id: str | None = None


Command = Join | Leave | Send | Ping


def parse(frame: str, max_text_len: int) -> Command | Reject:
    """One client text frame -> a validated command, or the reason it is refused."""
    try:
        obj = json.loads(frame)
    except ValueError:
        return Reject(ErrorCode.BAD_FRAME)
    if not isinstance(obj, dict):
        return Reject(ErrorCode.BAD_FRAME)
    op = obj.get("op")
    if op == "send":
        return _parse_send(obj, max_text_len)
    if op == "ping":
        return Ping()
    if op not in ("join", "leave"):
        return Reject(ErrorCode.UNKNOWN_OP)
    room = obj.get("room")
    if not isinstance(room, str) or not ROOM_PATTERN.match(room):
        return Reject(ErrorCode.BAD_ROOM)
    if op == "leave":
        return Leave(room)
    since, epoch = obj.get("since"), obj.get("epoch")
    if since is not None and (type(since) is not int or since < 0):
        return Reject(ErrorCode.BAD_SINCE)
    if epoch is not None and not isinstance(epoch, str):
        return Reject(ErrorCode.BAD_SINCE)
    return Join(room, since, epoch)


def _parse_send(obj: dict, max_text_len: int) -> Send | Reject:
    cid = obj.get("id")
    if not isinstance(cid, str) or not 0 < len(cid) <= MAX_ID_LEN:
        return Reject(ErrorCode.BAD_ID)
    room = obj.get("room")
    if not isinstance(room, str) or not ROOM_PATTERN.match(room):
        return Reject(ErrorCode.BAD_ROOM, cid)
    text = obj.get("text")
    if not isinstance(text, str):
        return Reject(ErrorCode.BAD_FRAME, cid)
    if not 0 < len(text) <= max_text_len:
        return Reject(ErrorCode.TEXT_TOO_LONG, cid)
    # Any "user" the client puts in the frame is ignored: the sender is the token's sub.
    return Send(room, cid, text)


# --- server frames -------------------------------------------------------------
# Compact separators: a frame is encoded once and written to thousands of sockets.

def _dump(obj: dict) -> str:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


def joined(room: str, offset: int, epoch: str, recovered: bool) -> str:
    return _dump({"op": "joined", "room": room, "offset": offset, "epoch": epoch,
                  "recovered": recovered})


def ack(room: str, cid: str, offset: int) -> str:
    return _dump({"op": "ack", "room": room, "id": cid, "offset": offset})


def left(room: str) -> str:
    return _dump({"op": "left", "room": room})


def pong() -> str:
    return '{"op":"pong"}'


def error(code: ErrorCode, cid: str | None = None, reason: str | None = None) -> str:
    out: dict = {"op": "error", "code": int(code), "reason": reason or ERROR_REASONS[code]}
    if cid is not None:
        out["id"] = cid
    return _dump(out)


def presence(room: str, count: int) -> str:
    return _dump({"op": "presence", "room": room, "count": count})


def reset(room: str, epoch: str) -> str:
    """History of the room was lost while connected: offsets restart at 1 in ``epoch``."""
    return _dump({"op": "reset", "room": room, "epoch": epoch})


def messages(room: str, raw_messages: list[str]) -> str:
    """A batch frame; ``raw_messages`` are message objects already encoded as JSON."""
    return f'{{"op":"messages","room":{_dump(room)},"messages":[{",".join(raw_messages)}]}}'


def welcome(user: str, replica: str, limits_json: str) -> str:
    """``limits_json`` is encoded once per replica: it is the same for every fan."""
    return f'{{"op":"welcome","user":{_dump(user)},"replica":{_dump(replica)},"limits":{limits_json}}}'
