"""End to end: real Ray + Serve (2 chat replicas), real Redis, real WebSocket clients."""

from __future__ import annotations

import asyncio
import random
import time

import httpx
import pytest
import redis

from cluster import keys, tokens
from tests.chat_client import Fan, paced_sends

pytestmark = pytest.mark.e2e

SEND_RATE = 8.0  # per connection, under the default limit of 10/s


async def fans_on_every_replica(stack, n: int, prefix: str, replicas: int = 2) -> list[Fan]:
    """n fans that between them sit on at least ``replicas`` distinct replicas."""
    fans = [await Fan.connect(stack.ws_url(f"{prefix}{i}")) for i in range(n)]
    extra = 0
    while len({f.welcome["replica"] for f in fans}) < replicas:
        assert extra < 50, "the kernel never spread connections over both replicas"
        fans.append(await Fan.connect(stack.ws_url(f"{prefix}x{extra}")))
        extra += 1
    return fans


async def test_twenty_fans_fifty_messages_with_duplicates_one_gap_free_sequence(stack, unique):
    room = f"concert-{unique}"
    fans = await fans_on_every_replica(stack, 20, f"f{unique}-")
    for f in fans:
        await f.join(room)
    rng = random.Random(7)
    plans = []
    for i, f in enumerate(fans):
        ids = [(f"{i}-{k}", f"fan {i} says {k}") for k in range(50)]
        # Deliberate retries: ~20% of sends go out a second time with the same id.
        plan = ids + [ids[k] for k in rng.sample(range(50), 10)]
        rng.shuffle(plan)
        plans.append(plan)
    await asyncio.gather(*(paced_sends(f, room, p, SEND_RATE) for f, p in zip(fans, plans)))
    total = sum(len({cid for cid, _ in p}) for p in plans)
    assert total == 20 * 50
    for f in fans:
        await f.wait(lambda f=f: len(f.offsets(room)) >= total, timeout=30, what="all messages")
    expected = list(range(1, total + 1))
    sequences = [f.offsets(room) for f in fans]
    assert all(seq == expected for seq in sequences)  # gap-free, ordered, exactly once
    # Same content for everyone, each message once, user = the sender's token sub.
    first = fans[0].messages(room)
    for f in fans[1:]:
        assert f.messages(room) == first
    sent = {(f"f{unique}-{cid.split('-')[0]}", cid) for p in plans for cid, _ in p}
    assert {(m["user"], m["id"]) for m in first} == sent
    # Retries got the original offset back in their ack.
    for f in fans:
        acks: dict[str, set[int]] = {}
        for a in (fr for fr in f.frames if fr["op"] == "ack"):
            acks.setdefault(a["id"], set()).add(a["offset"])
        assert all(len(offsets) == 1 for offsets in acks.values())
    for f in fans:
        await f.close()


async def test_reconnect_with_since_recovers_exactly_the_missed_messages(stack, unique):
    room = f"rec-{unique}"
    pub = await Fan.connect(stack.ws_url("pub"))
    await pub.join(room)
    fan = await Fan.connect(stack.ws_url("fan"))
    joined = await fan.join(room)
    await paced_sends(pub, room, [(f"a{i}", f"before {i}") for i in range(10)], SEND_RATE)
    await fan.wait(lambda: len(fan.offsets(room)) == 10)
    last, epoch = fan.offsets(room)[-1], joined["epoch"]
    await fan.close()  # mid-stream: the publisher goes on
    await paced_sends(pub, room, [(f"b{i}", f"missed {i}") for i in range(15)], SEND_RATE)
    await pub.wait(lambda: len(pub.offsets(room)) == 25)
    back = await Fan.connect(stack.ws_url("fan"))
    rejoined = await back.join(room, since=last, epoch=epoch)
    assert rejoined["recovered"] is True and rejoined["epoch"] == epoch
    await back.wait(lambda: len(back.offsets(room)) >= 15)
    assert back.offsets(room) == list(range(11, 26))
    assert [m["text"] for m in back.messages(room)] == [f"missed {i}" for i in range(15)]
    await paced_sends(pub, room, [(f"c{i}", f"after {i}") for i in range(5)], SEND_RATE)
    await back.wait(lambda: len(back.offsets(room)) >= 20)
    assert back.offsets(room) == list(range(11, 31))  # live stream continues, no duplicate
    await back.close()
    await pub.close()


async def test_history_lost_means_recovered_false_and_a_new_epoch(stack, unique):
    room = f"lost-{unique}"
    member = await Fan.connect(stack.ws_url("member"))
    first = await member.join(room)
    await paced_sends(member, room, [(f"m{i}", "x") for i in range(3)], SEND_RATE)
    await member.wait(lambda: len(member.offsets(room)) == 3)
    # Redis loses the room (emptied, failed over without persistence, evicted).
    redis.Redis.from_url(stack.settings.redis_url).delete(keys.room_meta(room), keys.room_log(room))
    late = await Fan.connect(stack.ws_url("late"))
    again = await late.join(room, since=3, epoch=first["epoch"])
    assert again["recovered"] is False and again["epoch"] != first["epoch"]
    assert again["offset"] == 0 and late.offsets(room) == []
    await late.send({"op": "send", "room": room, "id": "new-1", "text": "after the loss"})
    await late.next("ack", id="new-1")
    # The member that was connected throughout is told, then sees offset 1 of the new epoch.
    reset = await member.next("reset", room=room)
    assert reset["epoch"] == again["epoch"]
    await member.wait(lambda: member.offsets(room)[-1:] == [1])
    for f in (member, late):
        await f.close()


async def test_presence_counts_connections_across_replicas(stack, unique):
    room = f"pres-{unique}"
    fans = await fans_on_every_replica(stack, 3, f"p{unique}-")
    for f in fans:
        await f.join(room)
    n = len(fans)
    for f in fans:
        await f.wait(lambda f=f: [x["count"] for x in f.frames if x["op"] == "presence"][-1:] == [n],
                     timeout=15, what=f"presence {n}")
    for f in fans:
        await f.close()


async def test_ops_api_lists_live_replicas(stack):
    async with httpx.AsyncClient(base_url=stack.http, timeout=10) as http:
        deadline = time.monotonic() + 20
        while True:
            body = (await http.get("/api/chat/replicas", headers=stack.auth())).json()
            if len(body["replicas"]) >= 2 or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.2)
    assert len(body["replicas"]) == 2 and body["connections"] >= 0


# --- bad input: the caller gets its code, a bystander in the same room loses nothing ---


@pytest.fixture
async def bystander_room(stack, unique):
    room = f"bad-{unique}"
    bystander = await Fan.connect(stack.ws_url("bystander"))
    await bystander.join(room)
    publisher = await Fan.connect(stack.ws_url("publisher"))
    await publisher.join(room)
    sent = 0

    async def publish(n: int = 3) -> None:
        nonlocal sent
        await paced_sends(publisher, room, [(f"p{sent + i}", f"p{sent + i}") for i in range(n)], SEND_RATE)
        sent += n

    await publish()
    yield room, publish
    await publish()
    last_id = f"p{sent - 1}"
    last = (await publisher.next("ack", id=last_id, timeout=15))["offset"]
    await bystander.wait(lambda: bystander.offsets(room)[-1:] == [last], what="bystander caught up")
    # Everything accepted in the room (the publisher's and any the bad client got in),
    # in order, exactly once.
    assert bystander.offsets(room) == list(range(1, last + 1))
    assert {f"p{i}" for i in range(sent)} <= {m["id"] for m in bystander.messages(room)}
    assert bystander.closed is None
    await bystander.close()
    await publisher.close()


@pytest.mark.parametrize("frame,code", [
    ("{not json", 100),
    (b"\x00\xffbinary", 101),
    ('{"op":"dance"}', 102),
    ('{"op":"join","room":"no spaces allowed"}', 103),
    ('{"op":"send","room":"never-joined","id":"x","text":"hi"}', 104),
    ('{"op":"join","room":"$vip-only"}', 107),
])
async def test_bad_frames_get_their_error_code(stack, bystander_room, frame, code):
    room, publish = bystander_room
    bad = await Fan.connect(stack.ws_url("clumsy"))
    await bad.send(frame)
    err = await bad.next("error")
    assert err["code"] == code and err["reason"]
    await publish()
    await bad.send({"op": "ping"})
    await bad.next("pong")  # still connected and usable
    await bad.close()


async def test_text_too_long_names_the_send(stack, bystander_room):
    room, publish = bystander_room
    bad = await Fan.connect(stack.ws_url("essayist"))
    await bad.join(room)
    await bad.send({"op": "send", "room": room, "id": "long-1", "text": "x" * 1001})
    err = await bad.next("error")
    assert (err["code"], err["id"]) == (105, "long-1")
    await publish()
    await bad.close()


async def test_oversized_frame_closes_4009(stack, bystander_room):
    room, publish = bystander_room
    bad = await Fan.connect(stack.ws_url("big"))
    await bad.send({"op": "ping", "pad": "x" * 9000})
    closed = await bad.wait_closed()
    assert closed.rcvd.code == 4009
    await publish()


@pytest.mark.parametrize("token", ["", "not-a-jwt", "FORGED", "EXPIRED"])
async def test_bad_tokens_never_get_a_usable_connection(stack, bystander_room, token):
    room, publish = bystander_room
    if token == "FORGED":  # right shape, wrong secret, claims ops
        token = tokens.mint("an-attacker-secret-that-is-long-enough", "mallory", role="ops")
    elif token == "EXPIRED":
        token = tokens.mint(stack.settings.jwt_secret, "late", ttl_s=10, now=time.time() - 100)
    import websockets

    ws = await websockets.connect(f"{stack.ws}?token={token}")
    with pytest.raises(websockets.ConnectionClosed) as info:
        await ws.send('{"op":"join","room":"%s"}' % room)
        await asyncio.wait_for(ws.recv(), 10)
    assert info.value.rcvd.code == 4001
    await publish()


async def test_forged_user_field_is_ignored(stack, bystander_room):
    room, publish = bystander_room
    fan = await Fan.connect(stack.ws_url("honest-fan"))
    await fan.join(room)
    await fan.send({"op": "send", "room": room, "id": "f1", "text": "hi", "user": "the-artist"})
    ack = await fan.next("ack", id="f1")
    await fan.wait(lambda: ack["offset"] in fan.offsets(room))
    (msg,) = [m for m in fan.messages(room) if m["offset"] == ack["offset"]]
    assert msg["user"] == "honest-fan"
    await publish()
    await fan.close()


async def test_flood_is_rate_limited_then_closed_4008(stack, bystander_room):
    room, publish = bystander_room
    flood = await Fan.connect(stack.ws_url("flooder"))
    await flood.join(room)
    for i in range(200):
        try:
            await flood.send({"op": "send", "room": room, "id": f"spam{i}", "text": "spam"})
        except Exception:
            break
    closed = await flood.wait_closed()
    assert closed.rcvd.code == 4008
    limited = [e for e in flood.errors() if e["code"] == 106]
    assert limited and all(e["id"].startswith("spam") for e in limited)
    await publish()


async def test_private_room_with_the_claim_works(stack, unique):
    room = f"$vip-{unique}"
    vip = await Fan.connect(stack.ws_url("vip", rooms=[room]))
    assert (await vip.join(room))["room"] == room
    ops = await Fan.connect(stack.ws_url("ops-7", role="ops"))
    assert (await ops.join(room))["room"] == room
    await vip.close()
    await ops.close()
