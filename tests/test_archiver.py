"""The archiver actor on real Redis + Ray: a chat of known shape goes in, and every
analytic over the archive matches plain Python and DuckDB over the same files."""

import datetime as dt
import time
from collections import Counter

import duckdb
import pytest
import redis

from actors.archiver import start_archiver, wait_ready
from cluster import keys
from cluster.settings import Settings
from jobs import analytics as A
from tests import chat_shape as shape


def poll(check, timeout_s=60.0, every_s=0.05):
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, "condition not met before the deadline"
        time.sleep(every_s)


@pytest.fixture
def make_archiver(ray_session, component_redis_url, tmp_path, unique):
    """Factory: a detached archiver of our own on the component DB and a fresh data dir."""
    made = []

    def make(**env):
        settings = Settings.from_env({"FANDOM_REDIS_URL": component_redis_url,
                                      "FANDOM_DATA_DIR": str(tmp_path / "data"),
                                      "FANDOM_ARCHIVE_FLUSH_S": "60",
                                      **{k: str(v) for k, v in env.items()}})
        handle = start_archiver(settings, name=f"archiver-test-{unique}-{len(made)}")
        made.append(handle)
        wait_ready(handle)
        return handle, settings

    yield make
    for h in made:
        ray_session.kill(h, no_restart=True)


def dataset_rows(data_dir):
    t = A.open_dataset(data_dir).to_table()
    return t.to_pylist()


async def test_seeded_entries_match_what_the_broker_writes(aredis_client, component_redis_url, unique):
    from actors.chat.broker import Broker

    room = f"fmt-{unique}"
    await Broker(aredis_client, history_len=100, dedup_ttl_s=300).send(room, "ann", "c1", "hi")
    r = redis.Redis.from_url(component_redis_url)
    shape.seed(r, [shape.Msg(room + "x", 1, "c1", "ann", "hi", 1)])
    real = r.xrange(keys.room_log(room))[0]
    seeded = r.xrange(keys.room_log(room + "x"))[0]
    assert real[0] == seeded[0] == b"0-1"
    assert sorted(real[1]) == sorted(seeded[1])
    assert sorted(r.hgetall(keys.room_meta(room))) == sorted(r.hgetall(keys.room_meta(room + "x")))
    assert {room, room + "x"} <= {m.decode() for m in r.smembers(keys.ROOMS_INDEX)}


def test_known_shape_chat_is_archived_once_and_every_analytic_checks_out(
        make_archiver, component_redis_url, unique):
    import ray

    r = redis.Redis.from_url(component_redis_url)
    msgs = shape.generate(unique)
    first, second = msgs[: len(msgs) // 2], msgs[len(msgs) // 2:]
    archiver, settings = make_archiver(FANDOM_ARCHIVE_BATCH_ROWS=1000)
    shape.seed(r, first)
    ray.get(archiver.flush.remote())
    shape.seed(r, second)
    ray.get(archiver.flush.remote())
    # Duplicate re-deliveries: rewind our consumer group on every room, so Redis hands
    # the archiver every entry a second time.
    for room in shape.plan(unique):
        r.xgroup_setid(keys.room_log(room), keys.ARCHIVE_GROUP, "0")
    assert ray.get(archiver.flush.remote()) == 0
    status = ray.get(archiver.status.remote())
    assert (status["duplicates_dropped"], status["rows_written"]) == (len(msgs), len(msgs)), status

    rows = dataset_rows(settings.data_dir)
    ids = [(x["room"], x["epoch"], x["offset"]) for x in rows]
    assert len(ids) == len(set(ids)) == len(msgs)
    by_id = {(x["room"], x["offset"]): x for x in rows}
    for m in msgs:
        x = by_id[(m.room, m.offset)]
        assert (x["user"], x["text"], x["id"], x["text_len"]) == (m.user, m.text, m.id, len(m.text))
        assert int(x["ts"].timestamp() * 1000) == m.ts_ms
        assert (x["date"], x["hour"]) == (shape.minute_of(m.ts_ms).date(), shape.minute_of(m.ts_ms).hour)

    check_analytics(settings.data_dir, msgs, unique)


def check_analytics(data_dir, msgs, unique):
    glob = f"read_parquet('{data_dir}/chat/**/*.parquet', hive_partitioning=true)"
    # per-minute counts: the plan itself, then DuckDB
    counts = shape.per_minute(msgs)
    for room, plan in shape.plan(unique).items():
        expect = {shape.START + dt.timedelta(minutes=i): n for i, n in enumerate(plan) if n}
        assert {m: n for (r, m), n in counts.items() if r == room} == expect
    got = A.messages_per_minute(data_dir)
    assert {(r, m): n for r, m, n in zip(*(got[c].to_pylist() for c in ("room", "minute", "messages")))} == counts
    duck = duckdb.sql(f"select room, time_bucket(interval 1 minute, ts) m, count(*) from {glob} "
                      "group by all").fetchall()
    assert {(r, m.astimezone(dt.UTC)): n for r, m, n in duck} == counts

    room = f"show-{unique}"
    mine = [m for m in msgs if m.room == room]
    q = A.Query(room=room)
    s = A.summary(data_dir, q, top_n=5)
    assert s["peak_minute"].to_pylist() == [
        {"room": room, "minute": shape.START + dt.timedelta(minutes=2), "messages": 12}]
    assert s["unique_chatters"].to_pylist() == [{"room": room, "chatters": len({m.user for m in mine})}]
    assert [(x["user"], x["messages"]) for x in s["top_chatters"].to_pylist()] == \
        shape.top(Counter(m.user for m in mine), 5)
    assert [(x["word"], x["count"]) for x in s["top_words"].to_pylist()] == \
        shape.top(Counter(w for m in mine for w in shape.words(m.text)), 5)
    assert [(x["emoji"], x["count"]) for x in s["top_emojis"].to_pylist()] == \
        shape.top(Counter(e for m in mine for e in shape.emojis(m.text)), 5)
    lens = [len(m.text) for m in mine]
    p = s["length_percentiles"].to_pylist()[0]
    assert [p["p50"], p["p90"], p["p99"]] == pytest.approx(
        [shape.quantile_cont(lens, q) for q in (0.5, 0.9, 0.99)])
    dp = duckdb.sql(f"select quantile_cont(text_len, [0.5, 0.9, 0.99]) from {glob} "
                    f"where room = '{room}'").fetchall()[0][0]
    assert [p["p50"], p["p90"], p["p99"]] == pytest.approx(dp)
    span = s["time_span"].to_pylist()[0]
    assert int(span["first"].timestamp() * 1000) == min(m.ts_ms for m in mine)
    assert int(span["last"].timestamp() * 1000) == max(m.ts_ms for m in mine)
    assert span["messages"] == len(mine)

    # a time range that crosses the date boundary prunes partitions and cuts exactly
    start, end = shape.START + dt.timedelta(minutes=2, seconds=30), shape.START + dt.timedelta(minutes=5)
    q = A.Query(start=start, end=end)
    inside = [m for m in msgs if start.timestamp() * 1000 <= m.ts_ms < end.timestamp() * 1000]
    got = A.summary(data_dir, q)
    assert sum(got["messages_per_minute"]["messages"].to_pylist()) == len(inside)
    assert sorted(got["unique_chatters"].to_pylist(), key=lambda x: x["room"]) == sorted(
        ({"room": r, "chatters": len({m.user for m in inside if m.room == r})}
         for r in {m.room for m in inside}), key=lambda x: x["room"])
    # a range inside one hour reads only that hour's directories
    q = A.Query(start=shape.START + dt.timedelta(minutes=3, seconds=30), end=shape.START + dt.timedelta(minutes=5))
    dataset = A.open_dataset(data_dir)
    kept = {f.path.split("/chat/")[1].rpartition("/")[0] for f in dataset.get_fragments(filter=q.filter())}
    assert kept == {f"room={r}/date=2024-12-05/hour=0" for r in (f"show-{unique}", f"side-{unique}")}

    # Ray Data computes the same summary from per-block partials
    ray_s = A.summary_ray(data_dir, A.Query(room=room), top_n=5)
    for name, table in A.summary(data_dir, A.Query(room=room), top_n=5).items():
        assert ray_s[name].to_pylist() == table.to_pylist(), name


def test_archive_trails_live_chat_by_the_flush_age(make_archiver, component_redis_url, unique):
    """Real Broker.send, including client retries, and no explicit flush: the loop writes."""
    import asyncio

    import redis.asyncio as aredis

    from actors.chat.broker import Broker

    archiver, settings = make_archiver(FANDOM_ARCHIVE_FLUSH_S=0.5)

    async def chat():
        client = aredis.from_url(component_redis_url)
        broker = Broker(client, history_len=1000, dedup_ttl_s=300)
        results = []
        for i in range(30):
            results.append(await broker.send(f"live-{unique}", f"u{i % 4}", f"c{i}", f"msg {i}"))
            if i % 3 == 0:  # a client retry: same id, same offset, stored once
                again = await broker.send(f"live-{unique}", f"u{i % 4}", f"c{i}", f"msg {i}")
                assert again.duplicate and again.offset == results[-1].offset
        await client.aclose()
        return results

    sent = asyncio.run(chat())
    offsets = poll(lambda: (lambda rows: len(rows) == 30 and rows)(dataset_rows(settings.data_dir)))
    assert sorted(x["offset"] for x in offsets) == [s.offset for s in sent] == list(range(1, 31))
    assert {x["epoch"] for x in offsets} == {int(sent[0].epoch)}
    r = redis.Redis.from_url(component_redis_url)
    poll(lambda: r.xpending(keys.room_log(f"live-{unique}"), keys.ARCHIVE_GROUP)["pending"] == 0)


def test_a_new_epoch_is_archived_apart_from_the_old_one(make_archiver, component_redis_url, unique):
    import ray

    r = redis.Redis.from_url(component_redis_url)
    archiver, settings = make_archiver()
    room = f"reset-{unique}"
    old = [shape.Msg(room, o, f"c{o}", "ann", f"old {o}", 1733300000000 + o) for o in (1, 2, 3)]
    shape.seed(r, old, epoch=111)
    ray.get(archiver.flush.remote())
    r.delete(keys.room_meta(room), keys.room_log(room))   # history lost: the broker starts a new epoch
    shape.seed(r, [shape.Msg(room, o, f"d{o}", "bob", f"new {o}", 1733300100000 + o) for o in (1, 2)], epoch=222)
    poll(lambda: ray.get(archiver.flush.remote()) == 2 or
         sum(x["epoch"] == 222 for x in dataset_rows(settings.data_dir)) == 2)
    ids = sorted((x["epoch"], x["offset"], x["text"]) for x in dataset_rows(settings.data_dir))
    assert ids == [(111, 1, "old 1"), (111, 2, "old 2"), (111, 3, "old 3"), (222, 1, "new 1"), (222, 2, "new 2")]


def test_compaction_and_retention_through_the_actor(make_archiver, component_redis_url, unique):
    import ray

    r = redis.Redis.from_url(component_redis_url)
    archiver, settings = make_archiver(FANDOM_ARCHIVE_COMPACT_MIN_FILES=3, FANDOM_ARCHIVE_RETENTION_DAYS=1)
    room = f"cmp-{unique}"
    t0 = int(dt.datetime(2024, 12, 4, 20, 0, tzinfo=dt.UTC).timestamp() * 1000)
    for k in range(4):
        shape.seed(r, [shape.Msg(room, k * 5 + o, f"c{k}{o}", "ann", "x", t0 + k * 5 + o) for o in range(1, 6)])
        ray.get(archiver.flush.remote())
    assert ray.get(archiver.compact.remote()) == {"partitions_compacted": 1, "files_merged": 4}
    assert sorted(x["offset"] for x in dataset_rows(settings.data_dir)) == list(range(1, 21))
    assert ray.get(archiver.apply_retention.remote("2024-12-05")) == []
    assert ray.get(archiver.apply_retention.remote("2024-12-06")) == [f"room={room}/date=2024-12-04"]
    assert dataset_rows(settings.data_dir) == []


async def test_a_room_created_by_a_join_is_in_the_rooms_index(aredis_client, unique):
    from actors.chat.broker import Broker

    broker = Broker(aredis_client, history_len=100, dedup_ttl_s=300)
    await broker.meta(f"joined-first-{unique}")     # what a join does before any send
    assert await aredis_client.sismember(keys.ROOMS_INDEX, f"joined-first-{unique}")


async def test_history_tombstones_erased_messages_at_the_end_of_the_log(aredis_client, unique):
    from actors.chat.broker import Broker, tombstone

    broker = Broker(aredis_client, history_len=100, dedup_ttl_s=300)
    room = f"tail-{unique}"
    for i in range(1, 6):
        await broker.send(room, "ann" if i in (2, 4, 5) else "bob", f"c{i}", f"m{i}")
    await aredis_client.xdel(keys.room_log(room), "0-2", "0-4", "0-5")   # what erasure does
    h = await broker.history(room, 0)
    assert [o for o, _ in h.entries] == [1, 2, 3, 4, 5] and not h.more
    assert [raw for o, raw in h.entries if o in (2, 4, 5)] == [tombstone(o) for o in (2, 4, 5)]
    h = await broker.history(room, 3, limit=1)                 # bounded like the rows
    assert [raw for _, raw in h.entries] == [tombstone(4)] and h.more
    assert (await broker.history(room, 5)).entries == []
