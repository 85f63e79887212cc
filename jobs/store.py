"""Job records in Redis, so any API replica answers and a restart loses none.

A record is one JSON string (keys.job). Every status change goes through one Lua
script that merges a patch only if the current status is one the transition allows:
a cancel and a finishing job can race, and exactly one of them wins.
"""

from __future__ import annotations

import json
import time
from typing import Any

import redis.asyncio as aredis

from cluster import keys
from jobs.model import ACTIVE, JobRecord, JobStatus

_UPDATE = """
local cur = redis.call('GET', KEYS[1])
if not cur then return -1 end
local rec = cjson.decode(cur)
if ARGV[1] ~= '' and not string.find(',' .. ARGV[1] .. ',', ',' .. rec['status'] .. ',', 1, true) then
  return 0
end
local patch = cjson.decode(ARGV[2])
for k, v in pairs(patch) do rec[k] = v end
redis.call('SET', KEYS[1], cjson.encode(rec))
if tonumber(ARGV[3]) > 0 then redis.call('EXPIRE', KEYS[1], ARGV[3]) end
return 1
"""


class JobStore:
    def __init__(self, redis: aredis.Redis, *, ttl_s: int):
        self.redis = redis
        self.ttl_s = ttl_s
        self._update = redis.register_script(_UPDATE)

    async def create(self, record: JobRecord) -> None:
        record.created_at = record.created_at or time.time()
        async with self.redis.pipeline(transaction=True) as p:
            p.set(keys.job(record.id), json.dumps(record.to_json()))
            p.zadd(keys.JOBS_INDEX, {record.id: record.created_at})
            await p.execute()

    async def get(self, job_id: str) -> JobRecord | None:
        raw = await self.redis.get(keys.job(job_id))
        return JobRecord.from_json(json.loads(raw)) if raw else None

    async def list(self, *, limit: int = 100, status: JobStatus | None = None) -> list[JobRecord]:
        """Newest first; index entries whose record expired are pruned on the way."""
        ids = [i.decode() if isinstance(i, bytes) else i
               for i in await self.redis.zrevrange(keys.JOBS_INDEX, 0, -1)]
        out, gone = [], []
        for start in range(0, len(ids), 200):
            batch = ids[start:start + 200]
            for job_id, raw in zip(batch, await self.redis.mget([keys.job(i) for i in batch])):
                if raw is None:
                    gone.append(job_id)
                    continue
                rec = JobRecord.from_json(json.loads(raw))
                if status is None or rec.status == status:
                    out.append(rec)
            if len(out) >= limit:
                break
        if gone:
            await self.redis.zrem(keys.JOBS_INDEX, *gone)
        return out[:limit]

    async def active_ids(self) -> list[str]:
        return [r.id for r in await self.list(limit=10_000) if r.status in ACTIVE]

    async def update(self, job_id: str, patch: dict[str, Any], *,
                     allowed: tuple[JobStatus, ...] = ()) -> bool:
        """Merge ``patch`` if the status is in ``allowed`` (any if empty); True if applied.

        Records that reach a terminal status start their TTL (FANDOM_JOB_TTL_S)."""
        status = patch.get("status")
        if isinstance(status, JobStatus):
            patch = {**patch, "status": status.value}
        terminal = status is not None and JobStatus(status).terminal
        done = await self._update(keys=[keys.job(job_id)], args=[
            ",".join(s.value for s in allowed), json.dumps(patch), self.ttl_s if terminal else 0])
        if terminal and done == 1:
            await self.redis.expire(keys.job_tasks(job_id), 3600)
        return done == 1

    async def reset_tasks(self, job_id: str) -> None:
        await self.redis.delete(keys.job_tasks(job_id))

    async def task_reports(self, job_id: str) -> dict[str, dict]:
        raw = await self.redis.hgetall(keys.job_tasks(job_id))
        return {(k.decode() if isinstance(k, bytes) else k): json.loads(v) for k, v in raw.items()}
