"""This replica's rooms and the connections in them: ordered, gap-free fan-out.

Every room a local fan joined is subscribed once (sharded pub/sub). Publications are
accepted strictly in offset order; a gap (a pub/sub blip, a reconnect) is filled from
the room's Redis Stream before anything later is delivered, so a joined fan receives
every accepted message exactly once and in order. A room's frames are encoded once;
its writer brings every member up to date in passes, one write per member per pass,
resting a tick between passes, so what is accepted meanwhile goes out together.

All methods run on one event loop; no locks are needed because nothing yields
between reading and updating a room except where noted.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Protocol

from actors.chat import protocol
from actors.chat.broker import Broker, Subscriber
from actors.chat.room import Accept, Room, presence_due
from actors.chat.wsframe import text_frame
from cluster import keys
from cluster.codes import CloseCode

log = logging.getLogger("fandom.chat.hub")

REPLAY_CHUNK = 500          # messages per frame when replaying history on join
CATCH_UP_WAIT_S = 2.0       # a fan may resume from an offset another replica already sent
EPOCH_CHECK_S = 1.0         # how stale a room's epoch may be when handed to a joining fan
WRITE_SLICE = 100           # members written per turn of the event loop (see Hub._pass)


class Member(Protocol):
    def push(self, frame: bytes) -> bool:
        """Queue a complete WebSocket frame; False when the peer is too far behind."""

    def kill(self, code: CloseCode, reason: str) -> None:
        """Close the connection soon; idempotent."""


class Hub:
    def __init__(self, broker: Broker, *, replica_id: str, tick_s: float,
                 presence_interval_s: float, clock: Callable[[], float] = time.time):
        self.broker = broker
        self.replica_id = replica_id
        self.tick_s = tick_s
        self.presence_interval_s = presence_interval_s
        self.clock = clock
        self.rooms: dict[str, Room[Member]] = {}
        self.member_rooms: dict[Member, set[str]] = {}
        self._writers: set[Room[Member]] = set()  # rooms whose _write_room task runs
        self._opening: dict[str, asyncio.Future] = {}
        self._closing: dict[str, asyncio.Future] = {}
        self._presence: dict[str, int] = {}  # room -> other replicas' members, last round
        self._presence_sent: dict[str, tuple[int, float]] = {}  # room -> (count, when) last sent
        self._behind: dict[str, int] = {}  # room -> presence rounds its cursor trailed Redis
        self._epoch_checked: dict[str, float] = {}  # room -> when its epoch was last confirmed
        self._tasks: set[asyncio.Task] = set()
        self._stopping = False
        self._loops: asyncio.Future | None = None
        self.subscriber = Subscriber(broker.redis, self._on_publication, self._on_reconnect)

    # --- lifecycle ------------------------------------------------------------------

    async def run(self) -> None:
        """Run the subscriber and the presence loop until stop()."""
        self._loops = asyncio.gather(
            self.subscriber.run(lambda: self._stopping),
            self._presence_loop(),
        )
        try:
            await self._loops
        except asyncio.CancelledError:
            if not self._stopping:
                raise

    def stop(self) -> None:
        self._stopping = True
        if self._loops is not None:
            self._loops.cancel()

    async def settle(self, timeout_s: float) -> None:
        """Wait (bounded) for spawned work such as room unsubscribes to finish."""
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=timeout_s)

    @property
    def connections(self) -> int:
        return len(self.member_rooms)

    def attach(self, member: Member) -> None:
        self.member_rooms[member] = set()

    def detach(self, member: Member) -> None:
        for name in self.member_rooms.pop(member, ()):
            room = self.rooms.get(name)
            if room is not None:
                room.discard(member)

    # --- fan commands ---------------------------------------------------------------

    async def join(self, member: Member, name: str, since: int | None, epoch: str | None) -> None:
        """Add ``member`` to room ``name``; writes joined, any replay, then presence."""
        room = await self._room(name)
        # The replica may not know yet that the room's history was lost (no message
        # since): confirm the epoch before handing it out. A recovery join (since)
        # always confirms — it is about to promise "nothing missed". A fresh join
        # confirms at most once per EPOCH_CHECK_S per room, so 10,000 fans joining at
        # doors open cost one read; a stale epoch there is corrected by `reset`.
        now = self.clock()
        if since is not None or now - self._epoch_checked.get(name, 0.0) >= EPOCH_CHECK_S:
            self._epoch_checked[name] = now
            epoch_now, _ = await self.broker.meta(name)
            if epoch_now != room.epoch and not room.filling:
                self._reset(room, epoch_now)
                self._start_fill(room)
        recovered, replay = False, []
        if since is not None and epoch == room.epoch:
            recovered, replay = await self._replay(room, since)
        if member not in self.member_rooms:
            return  # disconnected while we waited
        # Nothing may yield from here on: flush what current members are owed, then
        # the newcomer starts exactly at the cursor.
        self._flush(room)
        room.add(member)
        self.member_rooms[member].add(name)
        frames = [protocol.joined(name, room.cursor, room.epoch, recovered)]
        frames += [protocol.messages(name, [raw for _, raw in replay[i:i + REPLAY_CHUNK]])
                   for i in range(0, len(replay), REPLAY_CHUNK)]
        others = self._presence.get(name, 0)
        frames.append(protocol.presence(name, others + len(room.members)))
        # One write (one syscall) for the whole answer.
        if not member.push(b"".join(text_frame(f.encode()) for f in frames)):
            self.drop_slow([member])

    async def _replay(self, room: Room, since: int) -> tuple[bool, list[tuple[int, str]]]:
        """(covered, messages since..cursor) from history; False if history lost them."""
        if since > room.cursor:
            # The fan may have seen offsets from a replica that is a few ms ahead of us.
            deadline = self.clock() + CATCH_UP_WAIT_S
            self._start_fill(room)
            while room.cursor < since and self.clock() < deadline:
                await asyncio.sleep(0.02)
            if room.cursor < since:
                return False, []
        replay: list[tuple[int, str]] = []
        after = since
        while after < room.cursor:
            h = await self.broker.history(room.name, after)
            if h.epoch != room.epoch:
                # History was lost and this replica had not noticed yet (the epoch
                # check is throttled): settle the new epoch before answering.
                epoch_now, _ = await self.broker.meta(room.name)
                if epoch_now != room.epoch and not room.filling:
                    self._reset(room, epoch_now)
                    self._start_fill(room)
                return False, []
            if not h.entries or h.entries[0][0] != after + 1:
                return False, []
            replay += h.entries
            after = h.entries[-1][0]
        # Redis may be ahead of our cursor; the rest arrives live after the join.
        return True, [e for e in replay if e[0] <= room.cursor]

    def leave(self, member: Member, name: str) -> None:
        room = self.rooms.get(name)
        if room is not None:
            room.discard(member)
        self.member_rooms.get(member, set()).discard(name)

    async def send(self, user: str, room: str, cid: str, text: str) -> str:
        """Store and publish one message; the ack frame (same offset for a retry)."""
        result = await self.broker.send(room, user, cid, text)
        return protocol.ack(room, cid, result.offset)

    # --- writing ----------------------------------------------------------------------

    def write(self, member: Member, frame: str) -> None:
        if not member.push(text_frame(frame.encode())):
            self.drop_slow([member])

    def _send_room(self, room: Room, frame: str) -> None:
        """Owe ``frame`` to the room's members, after everything accepted before it."""
        self._take(room)
        room.queue(text_frame(frame.encode()))
        self._wake_writer(room)

    def _take(self, room: Room) -> None:
        """Queue the messages accepted so far as one frame, owed to the members now."""
        frame = room.take_frame()
        if frame is not None:
            room.queue(text_frame(frame.encode()))

    def _wake_writer(self, room: Room) -> None:
        if room not in self._writers:
            self._writers.add(room)
            self._spawn(self._write_room(room))

    async def _write_room(self, room: Room) -> None:
        """The room's one writer while its members are owed anything.

        It makes a pass over the members at once, then rests a tick, and repeats
        until a rest ends with nothing new. Each member gets at most one write per
        pass: everything it is owed at the moment the pass reaches it, so a message
        accepted mid-pass still reaches the members the pass has not reached yet. A
        quiet room's message leaves at once; a room whose passes slow down (more
        members, a busy machine) batches more per write instead of queueing
        (docs/architecture.md, "Fan-out passes").
        """
        try:
            while True:
                self._take(room)
                if not room.out:
                    return
                await self._pass(room)
                await asyncio.sleep(self.tick_s)
        except Exception:  # one bad room must not stop every room's fan-out
            log.exception("writing room %s failed; retrying", room.name)
            asyncio.get_running_loop().call_later(1.0, self._retry_writer, room)
        finally:
            self._writers.discard(room)

    def _retry_writer(self, room: Room) -> None:
        if not self._stopping and self.rooms.get(room.name) is room:
            self._wake_writer(room)

    async def _pass(self, room: Room) -> None:
        """Bring every member up to date, WRITE_SLICE members at a time.

        A loopback send() costs ~9 us here, mostly kernel TCP work, so one pass over
        5,000 members is ~45 ms. Done in one go it held the event loop - the
        publisher's next message, publications from Redis, joins, every other room -
        for all of it. Between slices the loop runs other work, and what was accepted
        meanwhile joins the pass for the members still ahead.
        """
        members = list(room.members)
        for i in range(0, len(members), WRITE_SLICE):
            if i:
                await asyncio.sleep(0)
                self._take(room)
            end = room.out_end
            writes: dict[int, bytes] = {}
            slow = []
            owed = room.members
            for m in members[i:i + WRITE_SLICE]:
                since = owed.get(m)
                if since is None or since >= end:
                    continue  # left meanwhile, or joined after everything queued
                data = writes.get(since)
                if data is None:
                    data = writes[since] = room.owed(since, end)
                owed[m] = end
                if not m.push(data):
                    slow.append(m)
            if slow:
                self.drop_slow(slow)
        room.trim()

    def cut(self, member: Member, code: CloseCode, reason: str) -> None:
        """Take ``member`` out of every room now and close its connection soon."""
        self.detach(member)
        member.kill(code, reason)

    def drop_slow(self, members: list[Member]) -> None:
        for m in members:
            self.cut(m, CloseCode.SLOW_CONSUMER, "slow consumer: reconnect and resume with since")

    def _flush(self, room: Room) -> None:
        """Owe what ``room`` has accepted to its current members, now."""
        self._take(room)
        if room.out:
            self._wake_writer(room)

    # --- ordering: live publications and gap fills -----------------------------------

    def _on_publication(self, name: str, epoch: str, offset: int, raw: str) -> None:
        room = self.rooms.get(name)
        if room is None:
            return
        if room.filling:
            room.held.append((epoch, offset, raw))
        else:
            self._offer(room, epoch, offset, raw)

    def _offer(self, room: Room, epoch: str, offset: int, raw: str) -> None:
        if epoch == room.epoch:
            status = room.accept(offset, raw)
            if status is Accept.OK:
                self._wake_writer(room)
                return
            if status is Accept.DUPLICATE:
                return
        # A gap or a new epoch: history decides what happened.
        room.held.append((epoch, offset, raw))
        self._start_fill(room)

    def _on_reconnect(self) -> None:
        log.warning("pub/sub reconnected: resyncing %d rooms from history", len(self.rooms))
        for room in list(self.rooms.values()):
            self._start_fill(room)

    def _start_fill(self, room: Room) -> None:
        if room.filling or room.name in self._opening:
            return
        room.filling = True
        self._spawn(self._fill(room))

    async def _fill(self, room: Room) -> None:
        try:
            while True:
                h = await self.broker.history(room.name, room.cursor)
                if h.epoch is not None and h.epoch != room.epoch:
                    self._reset(room, h.epoch)
                    continue
                if h.entries and h.entries[0][0] > room.cursor + 1:
                    self._lost_history(room, h.entries[0][0] - 1)
                for offset, raw in h.entries:
                    room.accept(offset, raw)
                if h.entries:
                    self._wake_writer(room)
                if not h.more:
                    break
        except Exception:
            log.exception("filling room %s from history failed; retrying", room.name)
            room.filling = False
            asyncio.get_running_loop().call_later(1.0, self._start_fill, room)
            return
        room.filling = False
        held, room.held = room.held, []
        for item in held:
            if room.filling:
                room.held.append(item)
            else:
                self._offer(room, *item)

    def _reset(self, room: Room, epoch: str) -> None:
        self._flush(room)
        log.warning("room %s: history lost, new epoch %s", room.name, epoch)
        room.reset(epoch)
        self._send_room(room, protocol.reset(room.name, epoch))

    def _lost_history(self, room: Room, new_cursor: int) -> None:
        """We fell further behind than history reaches: members must resync themselves."""
        log.error("room %s: replica lagged past history (%d -> %d); dropping %d members",
                  room.name, room.cursor, new_cursor, len(room.members))
        self._flush(room)
        self.drop_slow(list(room.members))
        room.cursor = new_cursor

    # --- room subscription lifecycle ------------------------------------------------

    async def _room(self, name: str) -> Room:
        room = self.rooms.get(name)
        if room is not None and name not in self._opening:
            return room
        fut = self._opening.get(name)
        if fut is not None:
            return await asyncio.shield(fut)
        fut = self._opening[name] = asyncio.get_running_loop().create_future()
        try:
            if name in self._closing:
                await asyncio.shield(self._closing[name])
            # Placeholder first, holding publications, so none slips between the
            # subscription starting and the cursor being read.
            room = Room(name, epoch="", cursor=0)
            room.filling = True
            self.rooms[name] = room
            await self.subscriber.subscribe(name)
            room.epoch, room.cursor = await self.broker.meta(name)
        except BaseException as e:
            self.rooms.pop(name, None)
            del self._opening[name]
            fut.set_exception(e)
            fut.exception()  # retrieved: waiters re-raise it
            raise
        del self._opening[name]
        room.filling = False
        held, room.held = room.held, []
        for item in held:
            self._offer(room, *item)
        fut.set_result(room)
        return room

    def _close_room(self, room: Room) -> None:
        # Forget the room now, synchronously: a join arriving while we unsubscribe
        # opens a fresh room after the unsubscribe instead of joining a dying one.
        self.rooms.pop(room.name, None)
        self._presence.pop(room.name, None)
        self._presence_sent.pop(room.name, None)
        self._behind.pop(room.name, None)
        self._epoch_checked.pop(room.name, None)
        done = self._closing[room.name] = asyncio.get_running_loop().create_future()
        self._spawn(self._unsubscribe(room, done))

    async def _unsubscribe(self, room: Room, done: asyncio.Future) -> None:
        try:
            await self.subscriber.unsubscribe(room.name)
            await self.broker.redis.hdel(keys.room_presence(room.name), self.replica_id)
        except Exception:
            log.exception("closing room %s", room.name)
        finally:
            del self._closing[room.name]
            done.set_result(None)

    # --- presence and drift check ---------------------------------------------------

    async def _presence_loop(self) -> None:
        empty_rounds: dict[str, int] = {}
        while not self._stopping:
            await asyncio.sleep(self.presence_interval_s)
            try:
                await self._presence_round(empty_rounds)
            except Exception:
                log.exception("presence round failed")

    async def _presence_round(self, empty_rounds: dict[str, int]) -> None:
        rooms = [r for r in self.rooms.values() if r.name not in self._opening]
        for room in rooms:
            # Rooms linger for two rounds after the last member leaves: reconnect
            # storms re-join within seconds and should not churn subscriptions.
            empty_rounds[room.name] = empty_rounds.get(room.name, 0) + 1 if not room.members else 0
            if empty_rounds[room.name] > 2:
                del empty_rounds[room.name]
                self._close_room(room)
        now = self.clock()
        now_ms = int(now * 1000)
        stale_ms = now_ms - int(3 * self.presence_interval_s * 1000)
        async with self.broker.redis.pipeline(transaction=False) as p:
            for room in rooms:
                key = keys.room_presence(room.name)
                p.hset(key, self.replica_id, f"{len(room.members)}:{now_ms}")
                p.pexpire(key, int(3 * self.presence_interval_s * 1000))
                p.hgetall(key)
                p.hget(keys.room_meta(room.name), "seq")
            replies = await p.execute()
        for i, room in enumerate(rooms):
            fields, seq = replies[4 * i + 2], replies[4 * i + 3]
            others = 0
            for field, value in fields.items():
                count, _, at = value.decode().partition(":")
                if field.decode() != self.replica_id and int(at) >= stale_ms:
                    others += int(count)
            total = others + len(room.members)
            if room.members and presence_due(self._presence_sent.get(room.name), total, now):
                self._send_room(room, protocol.presence(room.name, total))
                self._presence_sent[room.name] = (total, now)
            self._presence[room.name] = others
            # Safety net for a publication lost with nothing after it to reveal the gap.
            behind = seq is not None and int(seq) > room.cursor and not room.filling
            self._behind[room.name] = self._behind.get(room.name, 0) + 1 if behind else 0
            if self._behind[room.name] >= 2:
                self._start_fill(room)

    def _spawn(self, coro) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
