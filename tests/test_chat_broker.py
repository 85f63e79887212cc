"""Component: the Redis broker and the hub against a real Redis (no Ray, no sockets)."""

import asyncio
import json

import pytest

from actors.chat.broker import Broker, tombstone
from actors.chat.hub import Hub
from cluster import keys
from cluster.codes import CloseCode


@pytest.fixture
def broker(aredis_client):
    return Broker(aredis_client, history_len=50, dedup_ttl_s=300)


async def test_offsets_start_at_one_and_step_by_one(broker, unique):
    room = f"r{unique}"
    results = [await broker.send(room, "u", f"m{i}", f"t{i}") for i in range(5)]
    assert [r.offset for r in results] == [1, 2, 3, 4, 5]
    assert len({r.epoch for r in results}) == 1 and not any(r.duplicate for r in results)
    assert await broker.meta(room) == (results[0].epoch, 5)
    assert room.encode() in await broker.redis.smembers(keys.ROOMS_INDEX)


async def test_concurrent_sends_never_share_an_offset(broker, unique):
    room = f"r{unique}"
    results = await asyncio.gather(*(broker.send(room, f"u{i % 7}", f"m{i}", "x") for i in range(200)))
    assert sorted(r.offset for r in results) == list(range(1, 201))


async def test_dedup_returns_the_same_offset_and_publishes_nothing(broker, aredis_client, unique):
    room = f"r{unique}"
    ps = aredis_client.pubsub()
    await ps.ssubscribe(keys.room_channel(room))
    await ps.get_message(timeout=1)  # subscription confirmation
    first = await broker.send(room, "alice", "m1", "hello")
    again = await broker.send(room, "alice", "m1", "hello (retry)")
    other_user = await broker.send(room, "bob", "m1", "same id, other user")
    assert (first.offset, again.offset, again.duplicate) == (1, 1, True)
    assert other_user.offset == 2 and not other_user.duplicate
    got = []
    while (m := await ps.get_message(timeout=0.5)) is not None:
        got.append(m["data"])
    assert len(got) == 2  # the retry published nothing
    ttl = await aredis_client.ttl(keys.room_dedup(room, "alice", "m1"))
    assert 290 < ttl <= 300
    await ps.aclose()


async def test_history_is_contiguous_and_trimmed_to_about_history_len(broker, unique):
    room = f"r{unique}"
    for i in range(300):
        await broker.send(room, "u", f"m{i}", f"t{i}")
    h = await broker.history(room, after=290)
    assert [o for o, _ in h.entries] == list(range(291, 301))
    assert json.loads(h.entries[0][1]) == {"offset": 291, "id": "m290", "user": "u", "text": "t290",
                                           "ts": json.loads(h.entries[0][1])["ts"]}
    assert h.first > 1 and 300 - h.first + 1 >= 50  # trimmed, but never below history_len
    old = await broker.history(room, after=0)
    assert old.entries[0][0] == h.first  # caller sees the hole at the head: not recoverable


async def test_erased_entries_become_tombstones_in_history(broker, unique):
    room = f"r{unique}"
    for i in range(5):
        await broker.send(room, "u", f"m{i}", "x")
    await broker.redis.xdel(keys.room_log(room), "0-2", "0-3")
    h = await broker.history(room, after=0)
    assert [o for o, _ in h.entries] == [1, 2, 3, 4, 5]
    assert h.entries[1][1] == tombstone(2) and h.entries[2][1] == tombstone(3)


async def test_lost_history_means_a_new_epoch(broker, unique):
    room = f"r{unique}"
    first = await broker.send(room, "u", "a", "x")
    await broker.redis.delete(keys.room_meta(room), keys.room_log(room))
    second = await broker.send(room, "u", "a", "x")  # dedup key survives, epoch does not
    assert second.epoch != first.epoch and second.offset == 1 and not second.duplicate


class Sink:
    """A hub member that records frames instead of writing to a socket."""

    def __init__(self, accept=True):
        self.frames, self.accept, self.killed = [], accept, None

    def push(self, data: bytes) -> bool:
        # One push may carry several complete RFC 6455 text frames back to back.
        while data:
            n, at = data[1] & 0x7F, 2
            if n == 126:
                n, at = int.from_bytes(data[2:4], "big"), 4
            elif n == 127:
                n, at = int.from_bytes(data[2:10], "big"), 10
            self.frames.append(json.loads(data[at:at + n]))
            data = data[at + n:]
        return self.accept

    def kill(self, code, reason):
        self.killed = code

    def offsets(self, room):
        return [m["offset"] for f in self.frames if f["op"] == "messages" and f["room"] == room
                for m in f["messages"]]


async def until(pred, timeout=10.0):
    deadline = asyncio.get_running_loop().time() + timeout
    while not pred():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


async def stop(hub, task):
    """Stop a hub and close its pub/sub connection (the shared client stays open)."""
    hub.stop()
    await asyncio.wait_for(task, 5)
    await hub.subscriber.close()


@pytest.fixture
async def hub(broker):
    h = Hub(broker, replica_id="test", tick_s=0.01, presence_interval_s=0.2)
    task = asyncio.create_task(h.run())
    yield h
    await stop(h, task)


async def test_hub_delivers_in_order_once_and_fills_gaps(hub, broker, unique):
    room = f"r{unique}"
    a, b = Sink(), Sink()
    for m in (a, b):
        hub.attach(m)
        await hub.join(m, room, None, None)
    assert a.frames[0]["op"] == "joined" and a.frames[0]["offset"] == 0
    # Pub/sub is at-most-once: drop offsets 5 and 6 on their way to this replica.
    forward = hub.subscriber.on_message
    hub.subscriber.on_message = lambda r, e, o, raw: None if o in (5, 6) else forward(r, e, o, raw)
    for i in range(10):
        await hub.send("u", room, f"m{i}", "x")
    # Offset 7 reveals the gap; history fills 5 and 6 before 7 is delivered.
    await until(lambda: a.offsets(room)[-1:] == [10])
    assert a.offsets(room) == b.offsets(room) == list(range(1, 11))


async def test_hub_resyncs_after_its_subscription_is_cut(broker, component_redis_url, unique):
    from cluster.redis_conn import async_client

    name = f"hub-{unique}"
    client = async_client(component_redis_url, name=name)
    hub = Hub(Broker(client, history_len=50, dedup_ttl_s=300), replica_id="cut",
              tick_s=0.01, presence_interval_s=0.2)
    task = asyncio.create_task(hub.run())
    room = f"r{unique}"
    m = Sink()
    hub.attach(m)
    await hub.join(m, room, None, None)
    await broker.send(room, "u", "m0", "x")
    await until(lambda: m.offsets(room) == [1])
    clients = await broker.redis.client_list(_type="pubsub")
    (victim,) = [c for c in clients if c["name"] == name]
    await broker.redis.client_kill_filter(_id=victim["id"])
    for i in range(1, 6):  # published while this replica is not listening
        await broker.send(room, "u", f"m{i}", "x")
    await until(lambda: m.offsets(room) == [1, 2, 3, 4, 5, 6])
    hub.stop()
    await asyncio.wait_for(task, 5)
    await client.aclose()


async def test_hub_join_with_since_replays_exactly_the_gap(hub, broker, unique):
    room = f"r{unique}"
    for i in range(30):
        await broker.send(room, "u", f"m{i}", "x")
    epoch, _ = await broker.meta(room)
    m = Sink()
    hub.attach(m)
    await hub.join(m, room, 12, epoch)
    assert m.frames[0] == {"op": "joined", "room": room, "offset": 30, "epoch": epoch, "recovered": True}
    assert m.offsets(room) == list(range(13, 31))
    stale = Sink()
    hub.attach(stale)
    await hub.join(stale, room, 12, "some-old-epoch")
    assert stale.frames[0]["recovered"] is False and stale.offsets(room) == []


async def _one_then_two_more(broker, unique, tick_s):
    """A hub with tick ``tick_s`` and one member: m1 sent and delivered, then m2, m3 sent."""
    hub = Hub(broker, replica_id="tick", tick_s=tick_s, presence_interval_s=60)
    task = asyncio.create_task(hub.run())
    room, m = f"r{unique}", Sink()
    hub.attach(m)
    await hub.join(m, room, None, None)
    await hub.send("u", room, "m1", "x")
    await until(lambda: m.offsets(room) == [1], timeout=30)
    await hub.send("u", room, "m2", "x")
    await hub.send("u", room, "m3", "x")
    return hub, task, room, m


async def test_a_quiet_rooms_message_goes_at_once_and_the_next_wait_out_the_tick(broker, unique):
    # A 60 s tick shows it without measuring time: the first message into a quiet room
    # arrived long before any tick could pass (a global tick would hold it); the ones
    # accepted while the room's writer rests are held.
    hub, task, room, m = await _one_then_two_more(broker, unique, 60.0)
    await until(lambda: hub.rooms[room].cursor == 3)
    assert m.offsets(room) == [1]
    await stop(hub, task)


async def test_messages_accepted_during_the_rest_leave_in_one_frame(broker, unique):
    hub, task, room, m = await _one_then_two_more(broker, unique, 2.0)
    await until(lambda: m.offsets(room) == [1, 2, 3])
    batches = [[x["offset"] for x in f["messages"]] for f in m.frames if f["op"] == "messages"]
    assert batches == [[1], [2, 3]]
    await stop(hub, task)


async def test_big_room_written_in_slices_keeps_order_for_fans_joining_mid_write(hub, broker, unique):
    # More members than one write slice, so frames are written over several loop turns
    # while sends and joins keep arriving. Every fan - the early ones and those who
    # joined while a frame was half written - gets exactly the offsets after the one
    # its joined frame named, in order.
    from actors.chat.hub import WRITE_SLICE

    room = f"r{unique}"
    early = [Sink() for _ in range(2 * WRITE_SLICE + 7)]
    for m in early:
        hub.attach(m)
        await hub.join(m, room, None, None)
    late = [Sink() for _ in range(20)]

    async def join_late():
        # Start once traffic flows, so the late fans really join mid-stream.
        await until(lambda: early[0].offsets(room) != [])
        for m in late:
            await asyncio.sleep(0)
            hub.attach(m)
            await hub.join(m, room, None, None)

    async def send_all():
        for i in range(40):
            await hub.send("u", room, f"m{i}", "x")

    await asyncio.gather(send_all(), join_late())
    # Up to date: the last offset received, or the joined offset for a fan who joined
    # after the last message.
    await until(lambda: all((m.offsets(room) or [m.frames[0]["offset"]])[-1] == 40 for m in early + late))
    for m in early + late:
        start = m.frames[0]["offset"]
        assert m.offsets(room) == list(range(start + 1, 41))
    assert {m.frames[0]["offset"] for m in late} != {0}  # some joined mid-stream


async def test_hub_drops_slow_consumers_without_stalling_the_room(hub, unique):
    room = f"r{unique}"
    fast, slow = Sink(), Sink(accept=False)
    for m in (fast, slow):
        hub.attach(m)
        await hub.join(m, room, None, None)
    assert slow.killed == CloseCode.SLOW_CONSUMER  # even the joined frame overflowed it
    await hub.send("u", room, "m1", "x")
    await until(lambda: fast.offsets(room) == [1])
    assert hub.connections == 1


async def test_presence_counts_members_across_replicas(broker, unique):
    room = f"r{unique}"
    hubs = [Hub(broker, replica_id=f"rep{i}", tick_s=0.01, presence_interval_s=0.1) for i in range(2)]
    tasks = [asyncio.create_task(h.run()) for h in hubs]
    sinks = [Sink() for _ in range(3)]
    for i, s in enumerate(sinks):
        hubs[i % 2].attach(s)
        await hubs[i % 2].join(s, room, None, None)

    def last_presence(s):
        counts = [f["count"] for f in s.frames if f["op"] == "presence"]
        return counts[-1] if counts else None

    await until(lambda: all(last_presence(s) == 3 for s in sinks))
    for h, t in zip(hubs, tasks):
        await stop(h, t)


async def test_recovery_right_after_history_loss_reports_the_new_epoch(hub, broker, unique):
    room = f"r{unique}"
    member = Sink()
    hub.attach(member)
    await hub.join(member, room, None, None)  # the epoch is now confirmed (throttled check)
    for i in range(3):
        await hub.send("u", room, f"m{i}", "x")
    await until(lambda: member.offsets(room) == [1, 2, 3])
    old_epoch = hub.rooms[room].epoch
    await broker.redis.delete(keys.room_meta(room), keys.room_log(room))
    late = Sink()
    hub.attach(late)
    await hub.join(late, room, 3, old_epoch)  # within the throttle window
    joined = late.frames[0]
    assert joined["recovered"] is False and joined["epoch"] != old_epoch
    await until(lambda: any(f["op"] == "reset" for f in member.frames))  # room frames go out via its writer
