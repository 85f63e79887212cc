"""One room as seen by one replica: its cursor, members and the batch being built.

Pure bookkeeping. The cursor is the offset of the last message this replica has
accepted for the room; everything at or below it has been (or is about to be, in
``pending``) written to every member. Messages must be accepted in offset order:
``accept`` says when one arrives early (a gap to fill from history) or late
(a duplicate to drop).
"""

from __future__ import annotations

from enum import Enum
from typing import Generic, TypeVar

from actors.chat import protocol

M = TypeVar("M")  # a member (connection); opaque here


class Accept(Enum):
    OK = "ok"
    DUPLICATE = "duplicate"
    GAP = "gap"


class Room(Generic[M]):
    __slots__ = ("name", "epoch", "cursor", "members", "pending", "filling", "held")

    def __init__(self, name: str, epoch: str, cursor: int):
        self.name = name
        self.epoch = epoch
        self.cursor = cursor
        self.members: set[M] = set()
        self.pending: list[str] = []
        # While a gap is being filled from history, live messages wait in `held`.
        self.filling = False
        self.held: list[tuple[str, int, str]] = []

    def accept(self, offset: int, raw: str) -> Accept:
        """Take message ``offset`` (JSON ``raw``) if it is the next one."""
        if offset <= self.cursor:
            return Accept.DUPLICATE
        if offset != self.cursor + 1:
            return Accept.GAP
        self.cursor = offset
        self.pending.append(raw)
        return Accept.OK

    def take_frame(self) -> str | None:
        """The batch frame for everything accepted since the last call, or None."""
        if not self.pending:
            return None
        frame = protocol.messages(self.name, self.pending)
        self.pending = []
        return frame

    def reset(self, epoch: str) -> None:
        """History was lost: a new epoch whose offsets start again at 1."""
        self.epoch = epoch
        self.cursor = 0
        self.held.clear()


# Presence in a big room changes on almost every round while fans come and go; sending
# each wiggle to 100,000 members costs a write per member per round and tells nobody
# anything (in a 100k doors-open ramp, 4.1M of the 4.8M frames fans received were
# presence counts; docs/architecture.md). Rooms under PRESENCE_BIG_ROOM see every
# change at the next round. In a big room a count is sent when it moved by more than
# PRESENCE_STEP of the last one sent, or, for smaller moves, once PRESENCE_REFRESH_S
# has passed.
PRESENCE_BIG_ROOM = 1_000
PRESENCE_STEP = 0.10
PRESENCE_REFRESH_S = 30.0


def presence_due(sent: tuple[int, float] | None, total: int, now: float) -> bool:
    """Whether to broadcast ``total`` given the last (count, time) sent, if any."""
    if sent is None:
        return True
    last, at = sent
    if total == last:
        return False
    if last < PRESENCE_BIG_ROOM:
        return True
    return abs(total - last) > last * PRESENCE_STEP or now - at >= PRESENCE_REFRESH_S
