"""The calendar and the applier's memory in Redis (async redis-py; keys in cluster/keys.py).

Used by the ops API, the CLI (through ``asyncio.run``) and the applier actor, so the
encoding of every key lives here once. A stored concert that no longer decodes is
reported and left in place, never silently dropped.
"""

from __future__ import annotations

import json
import time
from datetime import datetime
from typing import Any

import redis.asyncio as aredis

from cluster import calendar, keys
from cluster.calendar import Concert
from cluster.capacity import Override
from cluster.errors import FandomError, NotFoundError

# HSET only if the field exists: an update racing a delete must not resurrect the concert.
_UPDATE = """
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return 1
"""


class ConcertExists(FandomError):
    code, status = "concert_exists", 409


def _not_found(concert_id: str) -> NotFoundError:
    return NotFoundError(f"no concert with id {concert_id!r} (list them with `fandom schedule "
                         "list` or GET /api/concerts)", code="concert_not_found")


def _text(raw: Any) -> str:
    return raw.decode() if isinstance(raw, bytes) else raw


class CapacityStore:
    def __init__(self, redis: aredis.Redis):
        self.redis = redis

    # --- calendar -------------------------------------------------------------------
    async def concerts(self) -> tuple[list[Concert], list[str]]:
        """All stored concerts by start time, and a problem line for any that do not decode."""
        out, problems = [], []
        for cid, raw in (await self.redis.hgetall(keys.CONCERTS)).items():
            try:
                out.append(calendar.loads(raw))
            except (ValueError, KeyError, TypeError) as e:
                problems.append(f"concert {_text(cid)!r} in Redis does not decode ({e}); "
                                "fix or remove it")
        return sorted(out, key=lambda c: (c.start_ts, c.id)), problems

    async def get(self, concert_id: str) -> Concert:
        raw = await self.redis.hget(keys.CONCERTS, concert_id)
        if raw is None:
            raise _not_found(concert_id)
        return calendar.loads(raw)

    async def add(self, concert: Concert) -> None:
        if not await self.redis.hsetnx(keys.CONCERTS, concert.id, concert.dumps()):
            raise ConcertExists(f"a concert with id {concert.id!r} exists; update it (PUT "
                                "/api/concerts/{id}, `fandom schedule update`) or pick another id")

    async def replace(self, concert: Concert) -> None:
        if not await self.redis.eval(_UPDATE, 1, keys.CONCERTS, concert.id, concert.dumps()):
            raise _not_found(concert.id)

    async def remove(self, concert_id: str) -> None:
        if not await self.redis.hdel(keys.CONCERTS, concert_id):
            raise _not_found(concert_id)

    # --- override -------------------------------------------------------------------
    async def override(self) -> Override | None:
        raw = await self.redis.get(keys.CAPACITY_OVERRIDE)
        return Override(**json.loads(raw)) if raw else None

    async def set_override(self, override: Override | None) -> None:
        if override is None:
            await self.redis.delete(keys.CAPACITY_OVERRIDE)
        else:
            await self.redis.set(keys.CAPACITY_OVERRIDE, json.dumps(override.to_json()))

    # --- the applier's memory -------------------------------------------------------
    async def applied(self) -> dict[str, Any] | None:
        raw = await self.redis.get(keys.CAPACITY_APPLIED)
        return json.loads(raw) if raw else None

    async def set_applied(self, record: dict[str, Any]) -> None:
        await self.redis.set(keys.CAPACITY_APPLIED, json.dumps(record))

    async def observed(self) -> dict[str, Any] | None:
        raw = await self.redis.get(keys.CAPACITY_OBSERVED)
        return json.loads(raw) if raw else None

    async def set_observed(self, snapshot: dict[str, Any]) -> None:
        await self.redis.set(keys.CAPACITY_OBSERVED, json.dumps(snapshot),
                             ex=keys.CAPACITY_OBSERVED_TTL_S)

    async def log(self, event: str, **fields: Any) -> None:
        entry = {"event": event, "at": time.time(), **fields}
        await self.redis.xadd(keys.CAPACITY_LOG, {"json": json.dumps(entry)},
                              maxlen=keys.CAPACITY_LOG_MAXLEN, approximate=True)

    async def recent(self, count: int = 20) -> list[dict[str, Any]]:
        rows = await self.redis.xrevrange(keys.CAPACITY_LOG, count=count)
        return [json.loads(fields[b"json"] if b"json" in fields else fields["json"])
                for _, fields in reversed(rows)]

    # --- rehearsal clock ------------------------------------------------------------
    async def now(self, mode: str) -> float:
        """The applier's time: the wall clock, or the rehearsal clock (wall clock if unset)."""
        if mode == "redis":
            return await self.clock() or time.time()
        return time.time()

    async def clock(self) -> float | None:
        raw = await self.redis.get(keys.CAPACITY_CLOCK)
        return float(raw) if raw else None

    async def set_clock(self, at: datetime | float | None) -> None:
        if at is None:
            await self.redis.delete(keys.CAPACITY_CLOCK)
        else:
            ts = at.timestamp() if isinstance(at, datetime) else float(at)
            await self.redis.set(keys.CAPACITY_CLOCK, repr(ts))
