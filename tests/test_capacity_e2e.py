"""A concert night on a real Ray autoscaler (fake_multinode), driven by the calendar.

The session cluster (tests/conftest.py) has chat and transcode worker node types
that exist only when Ray's autoscaler launches them. The applier started by the
stack (exactly as `fandom up` starts it) runs on the rehearsal clock
(FANDOM_CAPACITY_CLOCK=redis), which this test moves: no minutes of sleeping, and
"before starts_at" means before it on the applier's own clock.

One scenario, in order: window opens -> planned nodes launched before the show and
the chat floor raised under a connected WebSocket -> the applier is killed
mid-concert and comes back re-applying the same plan, releasing nothing -> after
ends_at + hold the request is cleared and the nodes are released.
"""

import asyncio
import json
import time
from datetime import UTC, datetime, timedelta

import httpx
import pytest
import redis
import websockets

from actors.capacity_applier import APPLIER_NAME, autoscaler_request
from cluster import calendar, keys
from cluster.capacity import CapacityModel, pack, plan_at
from serve.deploy import chat_state
from tests.fake_cluster import WORKER_NODE_TYPES
from tests.serve_waits import chat_with, until

pytestmark = pytest.mark.e2e


def worker_nodes() -> dict[str, int]:
    """Alive worker nodes by type (the fake provider's types, told apart by resources)."""
    import ray

    out: dict[str, int] = {}
    for n in ray.nodes():
        res = n.get("Resources") or {}
        if not n.get("Alive") or "node:__internal_head__" in res:
            continue
        kind = "chat" if "fandom_chat" in res else "transcode" if "fandom_transcode" in res else "?"
        out[kind] = out.get(kind, 0) + 1
    return out


class Night:
    def __init__(self, stack, r: redis.Redis):
        self.stack, self.r = stack, r
        self.applier_seen_at = 0.0

    def set_clock(self, ts: float) -> None:
        self.r.set(keys.CAPACITY_CLOCK, repr(ts))

    def observed(self) -> dict:
        raw = self.r.get(keys.CAPACITY_OBSERVED)
        return json.loads(raw) if raw else {}

    def applier_at(self, ts: float) -> bool:
        """True once the applier has ticked (planned and applied) at clock time ``ts``."""
        return self.observed().get("clock_at") == ts

    def log(self) -> list[dict]:
        return [json.loads(f[b"json"]) for _, f in self.r.xrange(keys.CAPACITY_LOG)]


def ours(request: list[dict] | None) -> list[dict] | None:
    """fandom's bundles in the merged standing request (Ray Data/Train may add theirs)."""
    if request is None:
        return None
    return [b for b in request if any(k.startswith("fandom_") for k in b)]


@pytest.fixture
def night(stack):
    r = redis.Redis.from_url(stack.settings.redis_url)
    r.delete(keys.CONCERTS, keys.CAPACITY_OVERRIDE, keys.CAPACITY_CLOCK)
    yield Night(stack, r)
    # Leave the shared stack as we found it, even if the test failed half-way: with
    # the calendar empty, let the applier apply the everyday plan (floor back, request
    # cleared), wait for the extra replicas and nodes to go, then stop its clock.
    r.delete(keys.CONCERTS, keys.CAPACITY_OVERRIDE)
    r.set(keys.CAPACITY_CLOCK, repr(time.time()))
    deadline = time.monotonic() + 240
    base = stack.settings.chat_replicas
    while time.monotonic() < deadline:
        applied = json.loads(r.get(keys.CAPACITY_APPLIED) or "null")
        if applied and applied["requested"] == {"chat_floor": base, "bundles": []} and \
                len(chat_state().running) == base and worker_nodes() == {}:
            break
        time.sleep(1)
    r.delete(keys.CAPACITY_CLOCK)  # the applier idles again (other tests share it)


async def test_concert_night_on_a_real_autoscaler(stack, night, unique):
    import ray

    s = stack.settings
    model = CapacityModel.from_settings(s)
    # A real future date, so the API's "not in the past" check passes; the applier's
    # clock is what we move.
    starts = datetime.now(UTC).replace(microsecond=0) + timedelta(days=2)
    ends = starts + timedelta(hours=2)
    body = {"id": f"night-{unique}", "title": "Night", "starts_at": starts.isoformat(),
            "ends_at": ends.isoformat(), "expected_audience": 60_000, "live_ladders": 1}
    with httpx.Client(base_url=stack.http, headers=stack.auth(), timeout=15) as api:
        api.post("/api/concerts", json=body).raise_for_status()
    concert = calendar.loads(night.r.hget(keys.CONCERTS, body["id"]))
    opens = concert.start_ts - s.capacity_lead_s
    planned = plan_at([concert], opens, model)
    assert planned.chat_floor == 3 and len(planned.bundles) == 4
    expected_nodes = pack(planned.bundles, {k: v["resources"] for k, v in WORKER_NODE_TYPES.items()})
    assert expected_nodes == {"chat": 1, "transcode": 1}

    # 1. Before the window: the everyday state, and no worker nodes.
    t = opens - 60
    night.set_clock(t)
    await until(lambda: night.applier_at(t), 60, "the applier to tick before the window")
    assert worker_nodes() == {} and ours(autoscaler_request()) in ([], None)
    base = await asyncio.to_thread(chat_state)
    assert base.floor == s.chat_replicas

    async with websockets.connect(stack.ws_url(f"fan-{unique}")) as ws:
        welcome = json.loads(await ws.recv())
        assert welcome["op"] == "welcome" and welcome["replica"] in base.running

        # 2. The lead window opens (still before starts_at on the applier's clock).
        t = opens + 5
        night.set_clock(t)
        assert t < concert.start_ts
        await until(lambda: worker_nodes() == expected_nodes, 180,
                    f"the autoscaler to launch {expected_nodes}", ws)
        assert night.observed()["clock_at"] < concert.start_ts  # launched before the show
        assert ours(autoscaler_request()) == planned.bundles
        # A data-team Ray Data job on the same cluster registers with Ray's shared
        # AutoscalingCoordinator; when it finishes, the coordinator re-writes the standing
        # request from its requesters. Ours must be among them, not wiped.
        from ray.data._internal.cluster_autoscaler import get_or_create_autoscaling_coordinator
        coordinator = get_or_create_autoscaling_coordinator()
        ray.get(coordinator.request_resources.remote(
            requester_id="data-job", resources=[{"CPU": 1.0}], expire_after_s=60))
        during = autoscaler_request()
        assert ours(during) == planned.bundles and {"CPU": 1.0} in during
        ray.get(coordinator.cancel_request.remote("data-job"))
        assert autoscaler_request() == planned.bundles
        raised = await until(lambda: chat_with(3), 180,
                             "the chat floor of 3 replicas", ws)
        assert raised.floor == 3 and set(base.running) < set(raised.running)

        def api_sees_the_nodes():
            status = httpx.get(f"{stack.http}/api/capacity", headers=stack.auth(), timeout=15).json()
            return {n["type"] for n in status["nodes"] or []} >= {"head", "chat", "transcode"} and status

        status = await until(api_sees_the_nodes, 60, "GET /api/capacity to show the new nodes", ws)
        assert status["in_sync"] and status["requested"]["chat_floor"] == 3
        assert status["chat"]["floor"] == 3 and ours(status["autoscaler_request"]) == planned.bundles

        # 3. Mid-concert the applier dies; Ray restarts it and it re-applies from Redis.
        t = concert.start_ts + 600
        night.set_clock(t)
        await until(lambda: night.applier_at(t), 60, "the applier to tick mid-concert", ws)
        handle = ray.get_actor(APPLIER_NAME)
        pid = ray.get(handle.alive.remote())["pid"]
        recoveries = sum(e["event"] == "recovered" for e in night.log())

        def nothing_released():
            assert ours(autoscaler_request()) == planned.bundles, "resource request released early"
            assert worker_nodes() == expected_nodes, "worker nodes released early"
            assert chat_state().floor == 3, "chat floor lowered early"

        ray.kill(handle, no_restart=False)

        def restarted():
            try:
                return ray.get(handle.alive.remote(), timeout=5)["pid"] != pid
            except (ray.exceptions.RayActorError, ray.exceptions.GetTimeoutError):
                return False

        await until(restarted, 120, "Ray to restart the applier", ws, invariant=nothing_released)
        await until(lambda: sum(e["event"] == "recovered" for e in night.log()) > recoveries, 60,
                    "the restarted applier to recover", ws, invariant=nothing_released)
        recovered = [e for e in night.log() if e["event"] == "recovered"][-1]
        assert recovered["requested"] == planned.requested
        night.r.delete(keys.CAPACITY_OBSERVED)
        await until(lambda: night.applier_at(t), 60, "the restarted applier to tick", ws,
                    invariant=nothing_released)
        nothing_released()

        # 4. After ends_at + hold: request cleared, floor back, nodes released.
        t = concert.end_ts + s.capacity_hold_s
        night.set_clock(t)
        await until(lambda: ours(autoscaler_request()) == [], 60, "the resource request to clear", ws)
        await until(lambda: chat_state().floor == s.chat_replicas, 60,
                    "the chat floor to be lowered", ws)
        await until(lambda: worker_nodes() == {}, 240, "the worker nodes to be released", ws)
        await until(lambda: len(chat_state().running) == s.chat_replicas, 120,
                    "the concert's extra chat replica to leave", ws)
        await ws.send('{"op":"ping"}')
        assert json.loads(await asyncio.wait_for(ws.recv(), 15)) == {"op": "pong"}

    events = [e["event"] for e in night.log()]
    assert "applied" in events and "recovered" in events
