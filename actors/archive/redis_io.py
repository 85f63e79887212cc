"""The archiver's Redis side: consumer-group reads with the right epoch, acks, erasure.

Which epoch does an entry belong to? Stream entries do not carry it; the room's meta
does, and a new epoch *replaces* the log (the send script deletes it), which destroys
our consumer group with it. So: the epoch is read after the group is known to exist
and before each read, and any read served through the group comes from the log that
existed when the epoch was read — otherwise Redis answers NOGROUP and we start over
on the new log. Synchronous redis-py: the archiver runs this in its own thread.
"""

from __future__ import annotations

import logging
import threading
import time

import redis

from actors.archive.batch import Entry, parse_entry, stream_offset
from cluster import keys

log = logging.getLogger("fandom.archiver")

Item = tuple[str, str, Entry | None]  # room, stream id, parsed entry (None: gone/unreadable)


class StreamReader:
    def __init__(self, r: redis.Redis, *, count: int = 1000,
                 group: str = keys.ARCHIVE_GROUP, consumer: str = keys.ARCHIVE_CONSUMER):
        self.r, self.count, self.group, self.consumer = r, count, group, consumer
        self.grouped: set[str] = set()
        self._lock = threading.Lock()  # the loop and an explicit flush() may both poll

    def poll(self, block_ms: int) -> list[Item]:
        """New entries of every room (and, for rooms seen the first time, our pending ones)."""
        with self._lock:
            return self._poll(block_ms)

    def _poll(self, block_ms: int) -> list[Item]:
        rooms = {_s(x) for x in self.r.smembers(keys.ROOMS_INDEX)}
        items: list[Item] = []
        for room in sorted(rooms - self.grouped):
            items += self._adopt(room)
        rooms = sorted(self.grouped)
        if not rooms:
            return _idle(items, block_ms)
        with self.r.pipeline(transaction=False) as p:
            for room in rooms:
                p.hget(keys.room_meta(room), "epoch")
            epochs = {room: int(e) for room, e in zip(rooms, p.execute()) if e is not None}
        streams = {keys.room_log(room): ">" for room in epochs}
        if not streams:
            return _idle(items, block_ms)
        by_log = {keys.room_log(room): room for room in epochs}
        try:
            # Never BLOCK when we already have something to hand back.
            resp = self.r.xreadgroup(self.group, self.consumer, streams, count=self.count,
                                     block=None if items else max(1, block_ms))
        except redis.ResponseError as e:
            if "NOGROUP" not in str(e):
                raise
            log.info("a room's log was replaced (new epoch); re-adopting rooms")
            self.grouped.clear()
            return items
        for stream, entries in resp or []:
            room = by_log[_s(stream)]
            items += [(room, _s(i), parse_entry(room, epochs[room], i, f)) for i, f in entries]
        return items

    def _adopt(self, room: str) -> list[Item]:
        """Create our group on the room's log (from its start), or take back our pending."""
        log_key = keys.room_log(room)
        try:
            self.r.xgroup_create(log_key, self.group, id="0")
            created = True
        except redis.ResponseError as e:
            if "BUSYGROUP" not in str(e):
                return []  # no log yet (the room is being reset): try again next poll
            created = False
        self.grouped.add(room)
        if created:
            return []
        epoch = self.r.hget(keys.room_meta(room), "epoch")
        if epoch is None:
            return []
        items: list[Item] = []
        last = "0"
        while True:
            try:
                resp = self.r.xreadgroup(self.group, self.consumer, {log_key: last}, count=self.count)
            except redis.ResponseError as e:
                if "NOGROUP" not in str(e):
                    raise
                self.grouped.discard(room)
                return items
            entries = resp[0][1] if resp else []
            if not entries:
                return items
            items += [(room, _s(i), parse_entry(room, int(epoch), i, f)) for i, f in entries]
            last = _s(entries[-1][0])

    def ack(self, acks: dict[str, list[str]]) -> None:
        with self.r.pipeline(transaction=False) as p:
            for room, ids in acks.items():
                for i in range(0, len(ids), 1000):
                    p.xack(keys.room_log(room), self.group, *ids[i:i + 1000])
            p.execute()

    def pending(self) -> int:
        """Entries delivered to us and not yet acknowledged, over every room we read."""
        total = 0
        for room in list(self.grouped):
            try:
                total += self.r.xpending(keys.room_log(room), self.group)["pending"]
            except redis.ResponseError:
                pass
        return total


def erase_user(r: redis.Redis, user: str, before_ms: int) -> dict:
    """XDEL ``user``'s messages with ts <= before_ms from every room's log; drop their dedup keys.

    Recovery replay turns the holes into tombstones (actors.chat.broker.Broker.history).
    Returns {"rows": {room: n}, "dedup_keys": n}.
    """
    who = user.encode()
    removed: dict[str, set[int]] = {}
    for room in sorted(_s(x) for x in r.smembers(keys.ROOMS_INDEX)):
        log_key, start, gone = keys.room_log(room), "-", set()
        while True:
            rows = r.xrange(log_key, start, "+", count=1000)
            ids = [i for i, f in rows if f.get(b"user") == who and int(f.get(b"ts", 0)) <= before_ms]
            if ids:
                r.xdel(log_key, *ids)
                gone.update(stream_offset(i) for i in ids)
            if len(rows) < 1000:
                break
            start = "(" + _s(rows[-1][0])
        if gone:
            removed[room] = gone
    dedup = 0
    for key in r.scan_iter(match=keys.user_dedup_pattern(user), count=1000):
        if _owned_dedup_key(r, _s(key), who, before_ms, removed):
            dedup += r.delete(key)
    return {"rows": {room: len(o) for room, o in removed.items()}, "dedup_keys": dedup}


def _owned_dedup_key(r: redis.Redis, key: str, who: bytes, before_ms: int,
                     removed: dict[str, set[int]]) -> bool:
    """Is this dedup key of an erased message of ``who`` (not of a user whose id merely
    starts with ``who:``, nor of a message sent after the erasure began)?"""
    room, value = keys.room_of_key(key), r.get(key)
    if value is None:
        return False
    offset = int(_s(value).rpartition(":")[2])
    if offset in removed.get(room, ()):
        return True
    rows = r.xrange(keys.room_log(room), f"0-{offset}", f"0-{offset}")
    # Gone from the log (trimmed): it expires within dedup_ttl_s anyway; delete to be sure.
    if not rows:
        return True
    fields = rows[0][1]
    return fields.get(b"user") == who and int(fields.get(b"ts", 0)) <= before_ms


def redis_time_ms(r: redis.Redis) -> int:
    s, us = r.time()
    return s * 1000 + us // 1000


def _s(v: bytes | str) -> str:
    return v.decode() if isinstance(v, bytes) else v


def _idle(items: list[Item], block_ms: int) -> list[Item]:
    """Wait as a blocking read would when there is no log to block on.

    Without this a fresh cluster (no rooms yet, or rooms without a log) made the loop
    spin on SMEMBERS: a core of archiver and Redis CPU while nothing happened.
    """
    if not items:
        time.sleep(max(1, block_ms) / 1000)
    return items
