"""One room as seen by one replica: its cursor, members and what they are owed.

Pure bookkeeping. The cursor is the offset of the last message this replica has
accepted for the room; everything at or below it has been (or is about to be, in
``pending`` and then ``out``) written to every member. Messages must be accepted in
offset order: ``accept`` says when one arrives early (a gap to fill from history) or
late (a duplicate to drop).

Room frames (message batches, presence, resets) are numbered in the order they are
queued. ``out`` holds those not yet written to every member, and ``members`` maps each
member to the number of the first frame it has not been sent: so a member can be
brought up to date with one write of everything it is owed, whenever the writer
reaches it, and a member who joins is owed nothing queued before it joined.
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
    __slots__ = ("name", "epoch", "cursor", "members", "pending", "filling", "held", "out", "out_base")

    def __init__(self, name: str, epoch: str, cursor: int):
        self.name = name
        self.epoch = epoch
        self.cursor = cursor
        self.members: dict[M, int] = {}  # member -> number of the first frame it is owed
        self.pending: list[str] = []
        self.out: list[bytes] = []       # queued frames; out[0] is frame number out_base
        self.out_base = 0
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

    # --- members and the frames they are owed ----------------------------------------

    @property
    def out_end(self) -> int:
        """The number the next queued frame will get."""
        return self.out_base + len(self.out)

    def add(self, member: M) -> None:
        """A new member: owed only frames queued from now on."""
        self.members[member] = self.out_end

    def discard(self, member: M) -> None:
        self.members.pop(member, None)

    def queue(self, frame: bytes) -> None:
        """Owe ``frame`` to every current member (nobody when the room is empty)."""
        if self.members:
            self.out.append(frame)

    def owed(self, since: int, end: int) -> bytes:
        """Frames number ``since`` up to ``end`` (exclusive), as one write."""
        return b"".join(self.out[since - self.out_base:end - self.out_base])

    def trim(self) -> None:
        """Forget frames every member has been sent."""
        low = min(self.members.values(), default=self.out_end)
        del self.out[:low - self.out_base]
        self.out_base = low

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
