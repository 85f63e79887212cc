"""A chat of known shape, written into Redis exactly as the broker writes it, plus the
plain-Python answers every analytic must match.

Why seed streams instead of calling Broker.send: the broker stamps ``ts`` with Redis
TIME, so known per-minute counts over several minutes (and across an hour and a date
boundary) would need a test that runs for minutes. ``seed`` writes the same meta hash,
the same ``0-<offset>`` stream entries with the same fields and the same rooms index
(test_archiver.py checks the format against a real Broker.send), with chosen times.
"""

from __future__ import annotations

import datetime as dt
import math
import random
import re
from collections import Counter
from dataclasses import dataclass

import redis

from cluster import keys
from jobs.textstats import EMOJI_RANGES

START = dt.datetime(2024, 12, 4, 23, 57, tzinfo=dt.UTC)   # crosses an hour and a date
WORDS = ["encore", "Encore", "wow", "love", "this", "song", "drums", "Olé", "über", "42", "fans"]
EMOJIS = ["🎉", "❤️", "👍🏽", "🔥", "😂", "⭐"]
USERS = [f"fan{i}" for i in range(9)] + ["ann"]


@dataclass(frozen=True)
class Msg:
    room: str
    offset: int
    id: str
    user: str
    text: str
    ts_ms: int


def plan(suffix: str) -> dict[str, list[int]]:
    """Messages per minute from START, per room. Zero minutes are real gaps."""
    return {f"show-{suffix}": [3, 7, 12, 5, 0, 9],
            f"side-{suffix}": [10, 2, 2, 8],
            f"$vip:{suffix}": [1, 4]}


def generate(suffix: str, seed: int = 7) -> list[Msg]:
    rng = random.Random(seed)
    out = []
    for room, counts in plan(suffix).items():
        offset = 0
        for minute, n in enumerate(counts):
            base = int((START + dt.timedelta(minutes=minute)).timestamp() * 1000)
            for ts in sorted(base + rng.randrange(60_000) for _ in range(n)):
                offset += 1
                words = [rng.choice(WORDS) for _ in range(rng.randrange(1, 6))]
                if rng.random() < 0.6:
                    words.insert(rng.randrange(len(words) + 1), rng.choice(EMOJIS) * rng.randrange(1, 3))
                text = " ".join(words) + rng.choice(["", "!", "!!", "?", " ..."])
                out.append(Msg(room, offset, f"c{offset}", rng.choice(USERS), text, ts))
    return out


_SEED = """
local epoch = redis.call('HGET', KEYS[1], 'epoch')
if not epoch then
  epoch = ARGV[1]
  redis.call('HSET', KEYS[1], 'epoch', epoch, 'seq', 0)
end
for i = 2, #ARGV, 4 do
  local offset = redis.call('HINCRBY', KEYS[1], 'seq', 1)
  redis.call('XADD', KEYS[2], '0-' .. offset, 'id', ARGV[i], 'user', ARGV[i+1],
             'text', ARGV[i+2], 'ts', ARGV[i+3])
end
return epoch
"""


def seed(r: redis.Redis, msgs: list[Msg], epoch: int = 1733300000000001) -> None:
    """Append ``msgs`` to their rooms' logs as the broker would (offsets must follow on)."""
    script = r.register_script(_SEED)
    rooms: dict[str, list[Msg]] = {}
    for m in msgs:
        rooms.setdefault(m.room, []).append(m)
    for room, ms in rooms.items():
        args = [str(epoch)]
        for m in sorted(ms, key=lambda m: m.offset):
            args += [m.id, m.user, m.text, str(m.ts_ms)]
        script(keys=[keys.room_meta(room), keys.room_log(room)], args=args)
        r.sadd(keys.ROOMS_INDEX, room)


# --- the independent answers ---------------------------------------------------------

def minute_of(ts_ms: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(ts_ms // 60_000 * 60, dt.UTC)


def per_minute(msgs) -> dict[tuple[str, dt.datetime], int]:
    return dict(Counter((m.room, minute_of(m.ts_ms)) for m in msgs))


def words(text: str) -> list[str]:
    return [w for w in re.split(r"[^\w]+", text.lower()) if w]


def is_emoji(c: str) -> bool:
    return any(lo <= ord(c) <= hi for lo, hi in EMOJI_RANGES)


def emojis(text: str) -> list[str]:
    return [c for c in text if is_emoji(c)]


def quantile_cont(values: list[int], q: float) -> float:
    v = sorted(values)
    pos = (len(v) - 1) * q
    lo = math.floor(pos)
    return float(v[lo]) if lo == pos else v[lo] + (pos - lo) * (v[lo + 1] - v[lo])


def top(counter: Counter, n: int) -> list[tuple[str, int]]:
    return sorted(counter.items(), key=lambda kv: (-kv[1], kv[0]))[:n]
