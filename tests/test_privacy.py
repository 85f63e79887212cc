"""GDPR erasure end to end on the deployed stack: real WebSocket fans, the ops API, the
archiver started by `fandom up`, recovery replay, the dataset, analytics and the CLI."""

import asyncio
import json
import time

import httpx
import pytest
import redis
import redis.asyncio as aredis
from websockets.asyncio.client import connect

from actors.archiver import get_archiver
from actors.chat.broker import Broker, tombstone
from cluster import keys
from cluster.cli import main
from jobs import analytics as A

pytestmark = pytest.mark.e2e


async def frame(ws, want, timeout_s=20.0):
    """The next frame for which want(frame) holds (others are skipped)."""
    deadline = time.monotonic() + timeout_s
    while True:
        f = json.loads(await asyncio.wait_for(ws.recv(), max(0.01, deadline - time.monotonic())))
        if want(f):
            return f


async def fan(stack, user, room, since=None, epoch=None):
    ws = await connect(stack.ws_url(user))
    await frame(ws, lambda f: f["op"] == "welcome")
    join = {"op": "join", "room": room}
    if since is not None:
        join.update(since=since, epoch=epoch)
    await ws.send(json.dumps(join))
    joined = await frame(ws, lambda f: f["op"] == "joined")
    return ws, joined


async def say(ws, room, cid, text):
    await ws.send(json.dumps({"op": "send", "room": room, "id": cid, "text": text}))
    return (await frame(ws, lambda f: f["op"] == "ack" and f["id"] == cid))["offset"]


def rows_of(data_dir, room):
    t = A.open_dataset(data_dir).to_table(filter=A.Query(room=room).filter())
    return sorted(t.drop_columns(["date", "hour"]).to_pylist(), key=lambda x: x["offset"])


async def test_erased_user_is_gone_from_history_replay_dataset_and_analytics(stack, unique, capsys, tmp_path):
    room, ann, bob, cat = f"gdpr-{unique}", f"ann-{unique}", f"bob-{unique}", f"cat-{unique}"
    archiver = get_archiver()
    ws_bob, joined = await fan(stack, bob, room)
    ws_ann, _ = await fan(stack, ann, room)
    ws_cat, _ = await fan(stack, cat, room)
    offsets = {ann: [], bob: [], cat: []}
    script = [(bob, "hello everyone"), (ann, f"zebra{unique} secret one"), (cat, "drums drums"),
              (ann, f"zebra{unique} secret two 🎉"), (bob, "encore encore"), (ann, f"zebra{unique} three")]
    for i, (who, text) in enumerate(script):
        ws = {ann: ws_ann, bob: ws_bob, cat: ws_cat}[who]
        offsets[who].append(await say(ws, room, f"m{i}", text))
    await archiver.flush.remote()
    assert {r["user"] for r in rows_of(stack.settings.data_dir, room)} == {ann, bob, cat}
    offsets[ann].append(await say(ws_ann, room, "late", f"zebra{unique} not archived yet"))
    others_before = [r for r in rows_of(stack.settings.data_dir, room) if r["user"] != ann]

    # the ops API: fans may not, bad input is refused, ops get the report
    url = f"{stack.http}/api/privacy/erasures"
    async with httpx.AsyncClient(timeout=60) as http:
        r = await http.post(url, json={"user": ann}, headers=stack.auth(role="fan"))
        assert r.status_code == 403 and r.json()["code"] == "forbidden"
        r = await http.post(url, json={"user": ""}, headers=stack.auth())
        assert r.status_code == 422 and r.json()["code"] == "invalid_input"
        r = await http.post(url, json={"user": ann}, headers=stack.auth())
    assert r.status_code == 200, r.text
    report = r.json()
    assert report["user"] == ann and report["redis_rows"] == {room: 4}
    assert report["dataset_rows"] == {room: 3} and report["buffered_rows"] in (0, 1)

    # Redis history: the log holds nothing of ann; the replay path shows tombstones
    rs = redis.Redis.from_url(stack.settings.redis_url)
    assert all(f[b"user"] != ann.encode() for _, f in rs.xrange(keys.room_log(room)))
    client = aredis.from_url(stack.settings.redis_url)
    history = await Broker(client, history_len=10_000, dedup_ttl_s=300).history(room, 0)
    await client.aclose()
    replay = dict(history.entries)
    assert [replay[o] for o in offsets[ann]] == [tombstone(o) for o in offsets[ann]]
    assert all(json.loads(replay[o])["user"] == bob for o in offsets[bob])

    # a fan resuming through a real WebSocket join with since gets tombstones, not text
    ws_dan, joined = await fan(stack, f"dan-{unique}", room, since=0, epoch=joined["epoch"])
    assert joined["recovered"] is True
    seen = []
    while len(seen) < joined["offset"]:
        seen += (await frame(ws_dan, lambda f: f["op"] == "messages"))["messages"]
    assert [m["offset"] for m in seen] == list(range(1, joined["offset"] + 1))
    assert all(m == {"offset": m["offset"], "erased": True} for m in seen if m["offset"] in offsets[ann])
    assert not any(m.get("user") == ann or f"zebra{unique}" in m.get("text", "") for m in seen)
    for ws in (ws_ann, ws_bob, ws_cat, ws_dan):
        await ws.close()

    # the dataset and every analytic: ann gone, everyone else untouched
    await archiver.flush.remote()
    after = rows_of(stack.settings.data_dir, room)
    assert [r for r in after if r["user"] != ann] == others_before and ann not in {r["user"] for r in after}
    s = A.summary(stack.settings.data_dir, A.Query(room=room), top_n=50)
    assert s["unique_chatters"].to_pylist() == [{"room": room, "chatters": 2}]
    assert ann not in s["top_chatters"]["user"].to_pylist()
    assert f"zebra{unique}" not in s["top_words"]["word"].to_pylist()
    assert s["top_emojis"].num_rows == 0 and s["time_span"].to_pylist()[0]["messages"] == 3

    # re-archiving: Redis hands the archiver every entry again; ann stays out
    rs.xgroup_setid(keys.room_log(room), keys.ARCHIVE_GROUP, "0")
    await archiver.flush.remote()
    assert rows_of(stack.settings.data_dir, room) == after

    # the CLI does the same through the same actor
    assert main(["privacy", "erase", cat, "--json"]) == 0
    cli_report = json.loads(capsys.readouterr().out)
    assert cli_report["redis_rows"] == {room: 1} and cli_report["dataset_rows"] == {room: 1}
    assert {r["user"] for r in rows_of(stack.settings.data_dir, room)} == {bob}
    assert main(["privacy", "erase", cat, "--json"]) == 0          # idempotent: nothing more
    assert json.loads(capsys.readouterr().out)["redis_rows"] == {}

    # and the analytics CLI and HTTP API agree
    assert main(["analytics", "summary", "--room", room, "--json",
                 "--data-dir", stack.settings.data_dir]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["unique_chatters"] == [{"room": room, "chatters": 1}]
    async with httpx.AsyncClient(timeout=60) as http:
        r = await http.get(f"{stack.http}/api/analytics/summary", params={"room": room},
                           headers=stack.auth())
    assert r.status_code == 200 and r.json()["unique_chatters"] == doc["unique_chatters"]
    out = tmp_path / "room.png"
    assert main(["analytics", "plot", "--room", room, "--out", str(out),
                 "--data-dir", stack.settings.data_dir]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
