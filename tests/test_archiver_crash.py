"""Kill the archiver's process (SIGKILL) in each crash window, let Ray restart it, and
prove the dataset holds every offset exactly once and nothing stays unacknowledged.

The actor pauses at a named step when asked (``pause_at``) so the kill lands in the
window under test, not wherever the scheduler happens to be; the kill itself is real.
"""

import asyncio
import datetime as dt
import os
import signal
from collections import Counter

import pytest
import redis
import redis.asyncio as aredis

from actors.chat.broker import Broker
from cluster import keys
from jobs.analytics import open_dataset
from tests import chat_shape as shape
from tests.test_archiver import make_archiver, poll  # noqa: F401  (fixture)


def send_real(url, rooms, n_per_room, start=0):
    """Messages through the real send path (Lua: dedup, offset, XADD, SPUBLISH)."""
    async def go():
        client = aredis.from_url(url)
        broker = Broker(client, history_len=10_000, dedup_ttl_s=300)
        for i in range(start, start + n_per_room):
            for room in rooms:
                await broker.send(room, f"u{i % 5}", f"c{i}", f"message {i} in {room}")
        await client.aclose()
    asyncio.run(go())


def kill_when_paused(ray, archiver, point):
    def paused():
        s = ray.get(archiver.status.remote())
        return s if s["paused_at"] == point else None

    old = poll(paused)["pid"]
    os.kill(old, signal.SIGKILL)

    def restarted():  # Ray restarts the actor (max_restarts=-1); it recovers before ready
        try:
            s = ray.get(archiver.status.remote(), timeout=10)
        except (ray.exceptions.RayActorError, ray.exceptions.GetTimeoutError):
            return None
        return s if s["ready"] and s["pid"] != old else None

    return poll(restarted, timeout_s=120)


def assert_exactly_once(data_dir, r, expected):
    t = open_dataset(data_dir).to_table(columns=["room", "epoch", "offset"])
    got = Counter(zip(t["room"].to_pylist(), t["offset"].to_pylist()))
    assert {k: n for k, n in got.items() if n > 1} == {}, "duplicated rows"
    assert set(got) == expected, f"missing {sorted(expected - set(got))[:5]} extra {sorted(set(got) - expected)[:5]}"
    for room in {room for room, _ in expected}:
        assert r.xpending(keys.room_log(room), keys.ARCHIVE_GROUP)["pending"] == 0


@pytest.mark.parametrize("point", ["flush_written", "flush_renamed_one", "flush_before_ack"])
def test_kill_mid_flush_then_every_offset_exactly_once(ray_session, make_archiver, component_redis_url,
                                                       unique, point):
    ray = ray_session
    r = redis.Redis.from_url(component_redis_url)
    rooms = [f"a-{unique}", f"b-{unique}", f"$c:{unique}"]
    archiver, settings = make_archiver(FANDOM_ARCHIVE_BATCH_ROWS=40)
    send_real(component_redis_url, rooms, 10)
    ray.get(archiver.pause_at.remote(point))
    send_real(component_redis_url, rooms, 20, start=10)  # the loop flushes by size and pauses
    kill_when_paused(ray, archiver, point)
    send_real(component_redis_url, rooms, 5, start=30)
    ray.get(archiver.flush.remote())
    assert_exactly_once(settings.data_dir, r, {(room, o) for room in rooms for o in range(1, 36)})
    status = ray.get(archiver.status.remote())
    if point != "flush_written":
        assert status["duplicates_dropped"] > 0   # the re-delivered, already-committed rows


def test_kill_mid_compaction_then_every_offset_exactly_once(ray_session, make_archiver,
                                                            component_redis_url, unique):
    ray = ray_session
    r = redis.Redis.from_url(component_redis_url)
    room = f"cmp-{unique}"
    archiver, settings = make_archiver(FANDOM_ARCHIVE_COMPACT_MIN_FILES=2)
    t0 = int(dt.datetime(2024, 12, 4, 21, 0, tzinfo=dt.UTC).timestamp() * 1000)
    for k in range(3):
        shape.seed(r, [shape.Msg(room, k * 4 + o, f"c{k}{o}", "ann", "x", t0 + k * 4 + o) for o in range(1, 5)])
        ray.get(archiver.flush.remote())
    ray.get(archiver.pause_at.remote("compact_renamed"))
    archiver.compact.remote()  # its caller sees the actor die; nobody waits on it
    kill_when_paused(ray, archiver, "compact_renamed")
    assert_exactly_once(settings.data_dir, r, {(room, o) for o in range(1, 13)})
    files = [f for _, _, fs in os.walk(settings.data_dir + "/chat") for f in fs]
    assert len(files) == 1 and not files[0].startswith(".")


def test_kill_mid_erasure_then_the_restart_finishes_it(ray_session, make_archiver,
                                                       component_redis_url, unique):
    ray = ray_session
    r = redis.Redis.from_url(component_redis_url)
    rooms = [f"e1-{unique}", f"e2-{unique}"]
    archiver, settings = make_archiver()
    send_real(component_redis_url, rooms, 10)
    ray.get(archiver.flush.remote())
    ray.get(archiver.pause_at.remote("erase_rewrote_one"))
    archiver.erase.remote("u1")
    kill_when_paused(ray, archiver, "erase_rewrote_one")
    t = open_dataset(settings.data_dir).to_table(columns=["room", "user", "offset"])
    users = t["user"].to_pylist()
    assert "u1" not in users and len(users) == 2 * 8          # u1 sent 2 of 10 per room
    for room in rooms:
        assert all(f[b"user"] != b"u1" for _, f in r.xrange(keys.room_log(room)))
    assert_exactly_once(settings.data_dir, r, {
        (room, o) for room, o in zip(t["room"].to_pylist(), t["offset"].to_pylist())})
