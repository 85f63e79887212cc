"""The Redis side of chat: atomic send, history, epochs and the live subscription.

One Lua script per send does dedup check, offset assignment, XADD (approximate
MAXLEN) and SPUBLISH, so two replicas can never hand out the same offset and a
retried send can never be stored twice. Every key of a room shares the ``{room}``
hash tag (cluster.keys), so the script stays legal on Redis Cluster.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass

import redis.asyncio as aredis
from redis.asyncio.client import PubSub

from cluster import keys

log = logging.getLogger("fandom.chat.broker")

SUBSCRIBE_TIMEOUT_S = 10.0

# Creates the room's meta {epoch, seq} when it is missing. A missing meta means the
# room is new or its history was lost (Redis emptied or evicted): either way a fresh
# epoch, and any orphaned log is dropped so offsets restart cleanly at 1.
_ENSURE_META = """
local epoch = redis.call('HGET', KEYS[1], 'epoch')
local created = 0
if not epoch then
  local t = redis.call('TIME')
  epoch = t[1] .. string.sub(tostring(1000000 + tonumber(t[2])), 2)
  redis.call('DEL', KEYS[2])
  redis.call('HSET', KEYS[1], 'epoch', epoch, 'seq', 0)
  created = 1
end
"""

# KEYS: meta, log, dedup.  ARGV: user, client id, text, dedup ttl s, maxlen, channel.
# Returns {accepted 0/1, offset, epoch, created 0/1}.
# The published payload is "<epoch> <offset>\n<message json>" so subscribers can
# order messages without parsing the JSON. The message shape must match
# Broker._entry_json below (the history path).
SEND_SCRIPT = _ENSURE_META + """
local prev = redis.call('GET', KEYS[3])
if prev then
  local sep = string.find(prev, ':', 1, true)
  if string.sub(prev, 1, sep - 1) == epoch then
    return {0, tonumber(string.sub(prev, sep + 1)), epoch, created}
  end
end
local offset = redis.call('HINCRBY', KEYS[1], 'seq', 1)
local t = redis.call('TIME')
local ts = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[5], '0-' .. offset,
           'id', ARGV[2], 'user', ARGV[1], 'text', ARGV[3], 'ts', ts)
redis.call('SET', KEYS[3], epoch .. ':' .. offset, 'EX', ARGV[4])
local msg = cjson.encode({offset = offset, id = ARGV[2], user = ARGV[1], text = ARGV[3], ts = ts})
redis.call('SPUBLISH', ARGV[6], epoch .. ' ' .. offset .. '\\n' .. msg)
return {1, offset, epoch, created}
"""

# KEYS: meta, log. Returns {epoch, seq, created 0/1}.
META_SCRIPT = _ENSURE_META + """
return {epoch, tonumber(redis.call('HGET', KEYS[1], 'seq')), created}
"""


@dataclass(frozen=True, slots=True)
class SendResult:
    offset: int
    epoch: str
    duplicate: bool


@dataclass(frozen=True, slots=True)
class History:
    epoch: str | None        # None: the room has no meta (never used, or lost)
    first: int | None        # oldest offset still in the log, None if the log is empty
    entries: list[tuple[int, str]]  # (offset, message json), contiguous from after+1
    more: bool               # the limit was hit: ask again after the last entry


def tombstone(offset: int) -> str:
    """Placeholder for an offset whose message was erased (GDPR): offsets stay gap-free."""
    return f'{{"offset":{offset},"erased":true}}'


class Broker:
    def __init__(self, redis: aredis.Redis, *, history_len: int, dedup_ttl_s: int):
        self.redis = redis
        self.history_len = history_len
        self.dedup_ttl_s = dedup_ttl_s
        self._send = redis.register_script(SEND_SCRIPT)
        self._meta = redis.register_script(META_SCRIPT)

    async def send(self, room: str, user: str, cid: str, text: str) -> SendResult:
        accepted, offset, epoch, created = await self._send(
            keys=[keys.room_meta(room), keys.room_log(room), keys.room_dedup(room, user, cid)],
            args=[user, cid, text, self.dedup_ttl_s, self.history_len, keys.room_channel(room)],
        )
        if created:
            await self.redis.sadd(keys.ROOMS_INDEX, room)
        return SendResult(int(offset), _s(epoch), duplicate=not accepted)

    async def meta(self, room: str) -> tuple[str, int]:
        """(epoch, last offset) of the room, creating a fresh epoch if it has none."""
        epoch, seq, created = await self._meta(keys=[keys.room_meta(room), keys.room_log(room)])
        if created:  # a join can create the room before its first send: index it here too
            await self.redis.sadd(keys.ROOMS_INDEX, room)
        return _s(epoch), int(seq)

    async def history(self, room: str, after: int, limit: int = 1000) -> History:
        """Messages with offset > ``after`` (at most ``limit`` log entries), in order."""
        async with self.redis.pipeline(transaction=True) as p:
            p.hmget(keys.room_meta(room), "epoch", "seq")
            p.xrange(keys.room_log(room), "-", "+", count=1)
            p.xrange(keys.room_log(room), f"0-{after + 1}", "+", count=limit)
            (epoch, seq), head, rows = await p.execute()
        first = _offset(head[0][0]) if head else None
        entries: list[tuple[int, str]] = []
        # Holes inside the kept window are erasures; fill them so offsets stay contiguous.
        expect = after + 1 if first is not None and first <= after + 1 else None
        for entry_id, fields in rows:
            off = _offset(entry_id)
            if expect is not None:
                entries.extend((o, tombstone(o)) for o in range(expect, off))
            entries.append((off, self._entry_json(off, fields)))
            expect = off + 1
        more = len(rows) >= limit
        # So is a gap between the newest kept entry and seq: the send script assigns seq
        # and appends in one step, and trimming only ever drops the oldest entries.
        if expect is not None and not more and seq is not None and int(seq) >= expect:
            last = min(int(seq), expect + limit - 1)
            entries.extend((o, tombstone(o)) for o in range(expect, last + 1))
            more = last < int(seq)
        return History(_s(epoch) if epoch else None, first, entries, more)

    @staticmethod
    def _entry_json(offset: int, f: dict) -> str:
        return json.dumps(
            {"offset": offset, "id": _s(f[b"id"]), "user": _s(f[b"user"]),
             "text": _s(f[b"text"]), "ts": int(f[b"ts"])},
            separators=(",", ":"), ensure_ascii=False)


def _s(v: bytes | str) -> str:
    return v.decode() if isinstance(v, bytes) else v


def _offset(entry_id: bytes | str) -> int:
    return int(_s(entry_id).partition("-")[2])


def parse_publication(data: bytes) -> tuple[str, int, str]:
    """``<epoch> <offset>\\n<json>`` -> (epoch, offset, json)."""
    head, _, raw = data.partition(b"\n")
    epoch, _, offset = head.partition(b" ")
    return epoch.decode(), int(offset), raw.decode()


OnMessage = Callable[[str, str, int, str], None]  # room, epoch, offset, json


class _PubSub(PubSub):
    """redis-py resubscribes silently after a reconnect; we need to know, to resync."""

    on_reconnect: Callable[[], None] | None = None
    _connected_once = False

    async def on_connect(self, connection) -> None:
        await super().on_connect(connection)
        if self._connected_once and self.on_reconnect:
            self.on_reconnect()
        self._connected_once = True


class Subscriber:
    """One sharded pub/sub connection per replica, subscribed to the rooms it holds."""

    def __init__(self, redis: aredis.Redis, on_message: OnMessage, on_reconnect: Callable[[], None]):
        self.ps = _PubSub(redis.connection_pool)
        self.ps.on_reconnect = on_reconnect
        self.on_message = on_message
        self._confirm: dict[str, asyncio.Future] = {}
        # False only from a failed read until the next good one. Starting False made
        # the health check fail while the first room's SSUBSCRIBE was still in flight
        # (seen under a 100k-fan connect burst: "lost its Redis subscription").
        self.healthy = True

    async def subscribe(self, room: str) -> None:
        """Returns once Redis confirms: from then on every publication reaches us."""
        channel = keys.room_channel(room)
        fut = self._confirm.get(channel)
        if fut is None:
            fut = self._confirm[channel] = asyncio.get_running_loop().create_future()
            try:
                await self.ps.ssubscribe(channel)
            except BaseException:
                del self._confirm[channel]
                raise
        # Bounded: if the confirmation is lost with the connection, the join fails
        # (the client gets "unavailable" and retries) instead of hanging.
        await asyncio.wait_for(asyncio.shield(fut), SUBSCRIBE_TIMEOUT_S)

    async def unsubscribe(self, room: str) -> None:
        await self.ps.sunsubscribe(keys.room_channel(room))

    async def run(self, stopping: Callable[[], bool]) -> None:
        """Read publications until ``stopping()``; reconnects with backoff."""
        backoff = 0.1
        while not stopping():
            if not self.ps.subscribed:
                await asyncio.sleep(0.05)  # nothing to read yet; ssubscribe will start it
                continue
            try:
                msg = await self.ps.get_message(timeout=1.0)
                self.healthy = True
                backoff = 0.1
            except (aredis.ConnectionError, aredis.TimeoutError, OSError) as e:
                self.healthy = False
                log.warning("pub/sub connection lost (%s); retrying in %.1fs", e, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            if msg is None:
                continue
            kind, channel = msg["type"], _s(msg["channel"])
            if kind == "smessage":
                epoch, offset, raw = parse_publication(msg["data"])
                self.on_message(keys.room_of_channel(channel), epoch, offset, raw)
            elif kind == "ssubscribe":
                fut = self._confirm.pop(channel, None)
                if fut is not None and not fut.done():
                    fut.set_result(None)

    async def close(self) -> None:
        await self.ps.aclose()

