"""The applier's logic against a real Redis, with its clock and cluster effects recorded.

The Ray side (request_resources, the Serve floor) is exercised for real in
tests/test_capacity_e2e.py; here we pin down ordering, idempotence and recovery.
"""

from datetime import UTC, datetime, timedelta

import pytest

from actors.capacity_applier import Applier, Effects
from cluster.calendar import parse_concert
from cluster.capacity import CapacityModel, Override
from cluster.capacity_store import CapacityStore
from cluster.errors import ConfigError

NOW = datetime(2026, 7, 1, 18, 0, tzinfo=UTC)
MODEL = CapacityModel(fans_per_replica=10_000, cpus_per_replica=1.0, cpus_per_ladder=2.0,
                      lead_s=600, hold_s=300, headroom=1.0, base_floor=2, max_replicas=20)
SHOW = parse_concert({"id": "show", "title": "Show", "starts_at": (NOW + timedelta(hours=1)).isoformat(),
                      "ends_at": (NOW + timedelta(hours=2)).isoformat(), "expected_audience": 40_000,
                      "live_ladders": 1}, now=NOW)
CHAT = {"CPU": 1.0, "fandom_chat": 1.0}
LADDER = {"CPU": 2.0, "fandom_transcode": 1.0}


class Cluster:
    """A stand-in for Ray + Serve state: records each *change* the applier causes."""

    def __init__(self):
        self.calls: list[tuple] = []
        self.bundles: list | None = None
        self.floor: int | None = None
        self.fail_floor: Exception | None = None

    def effects(self) -> Effects:
        def request(bundles):
            if bundles != self.bundles:
                self.bundles = list(bundles)
                self.calls.append(("request", len(bundles)))

        def set_floor(n):  # like serve.deploy.set_chat_floor: True only if it moved
            if self.fail_floor:
                raise self.fail_floor
            if n == self.floor:
                return False
            self.floor = n
            self.calls.append(("floor", n))
            return True

        return Effects(request=request, set_floor=set_floor, observe=lambda: {"nodes": []})


class Clock:
    def __init__(self):
        self.t: float | None = None

    async def __call__(self):
        return self.t


@pytest.fixture
async def store(aredis_client):
    return CapacityStore(aredis_client)


async def test_unset_rehearsal_clock_does_nothing(store):
    cluster, clock = Cluster(), Clock()
    await store.add(SHOW)
    assert await Applier(MODEL, store, cluster.effects(), clock).step() is None
    assert cluster.calls == [] and await store.applied() is None


async def test_window_opens_applies_once_then_releases(store):
    cluster, clock = Cluster(), Clock()
    await store.add(SHOW)
    applier = Applier(MODEL, store, cluster.effects(), clock)
    clock.t = SHOW.start_ts - 601
    await applier.step()
    # Before the window: the first tick pins down the everyday state (no request, base floor).
    assert cluster.calls == [("request", 0), ("floor", 2)]
    await applier.step()
    assert len(cluster.calls) == 2  # and then holds it: nothing changes
    cluster.calls = []
    clock.t = SHOW.start_ts - 600
    plan = await applier.step()
    assert plan.chat_floor == 4 and plan.bundles == [CHAT] * 4 + [LADDER]
    # Growing: nodes are asked for before the floor moves (they take longest).
    assert cluster.calls == [("request", 5), ("floor", 4)]
    record = await store.applied()
    assert record["requested"] == {"chat_floor": 4, "bundles": [CHAT] * 4 + [LADDER]}
    for t in (SHOW.start_ts, SHOW.end_ts, SHOW.end_ts + 299):  # lead -> live -> hold: same plan
        clock.t = t
        await applier.step()
    assert cluster.calls == [("request", 5), ("floor", 4)]
    clock.t = SHOW.end_ts + 300
    await applier.step()
    # Shrinking: the floor goes first, then the request is cleared.
    assert cluster.calls[2:] == [("floor", 2), ("request", 0)]
    events = [e["event"] for e in await store.recent()]
    assert events == ["applied", "applied", "applied"]


async def test_restart_reapplies_the_record_and_releases_nothing(store):
    cluster, clock = Cluster(), Clock()
    await store.add(SHOW)
    clock.t = SHOW.start_ts + 60
    await Applier(MODEL, store, cluster.effects(), clock).step()
    assert cluster.calls == [("request", 5), ("floor", 4)]
    # The actor dies; Ray starts a new one that knows only what Redis holds. Meanwhile
    # someone redeployed the base Serve config, resetting the floor.
    cluster.floor, cluster.calls = 2, []
    reborn = Applier(MODEL, store, cluster.effects(), clock)
    await reborn.recover()
    assert cluster.calls == [("floor", 4)]  # the recorded plan again; the request untouched
    for t in (SHOW.start_ts + 120, SHOW.end_ts + 10):  # mid-concert and in the hold
        clock.t = t
        await reborn.step()
    assert cluster.calls == [("floor", 4)] and cluster.bundles == [CHAT] * 4 + [LADDER]
    recovered = [e for e in await store.recent() if e["event"] == "recovered"]
    assert recovered[-1]["requested"] == {"chat_floor": 4, "bundles": [CHAT] * 4 + [LADDER]}


async def test_floor_reset_outside_the_applier_is_restored_within_a_tick(store):
    cluster, clock = Cluster(), Clock()
    await store.add(SHOW)
    applier = Applier(MODEL, store, cluster.effects(), clock)
    clock.t = SHOW.start_ts
    await applier.step()
    cluster.floor = 2  # e.g. `serve deploy` of the base config mid-show
    await applier.step()
    assert cluster.floor == 4
    assert [e["event"] for e in await store.recent()][-1] == "floor_restored"


async def test_failed_apply_is_logged_once_retried_and_not_recorded(store):
    cluster, clock = Cluster(), Clock()
    await store.add(SHOW)
    cluster.fail_floor = ConfigError("drift", code="serve_config_drift")
    applier = Applier(MODEL, store, cluster.effects(), clock)
    clock.t = SHOW.start_ts
    for _ in range(3):
        await applier.step()
    assert await store.applied() is None
    failures = [e for e in await store.recent() if e["event"] == "apply_failed"]
    assert len(failures) == 1 and "serve_config_drift" in failures[0]["error"]
    assert applier.last_error.startswith("serve_config_drift")
    cluster.fail_floor = None
    await applier.step()
    assert (await store.applied())["requested"]["chat_floor"] == 4 and applier.last_error == ""


async def test_override_and_calendar_edits_take_effect_on_the_next_tick(store):
    cluster, clock = Cluster(), Clock()
    applier = Applier(MODEL, store, cluster.effects(), clock)
    clock.t = NOW.timestamp()
    await applier.step()
    cluster.calls = []
    await store.set_override(Override(chat_replicas=6, until=clock.t + 60, reason="press day"))
    await applier.step()
    assert cluster.calls == [("request", 6), ("floor", 6)]
    await store.set_override(None)
    await applier.step()
    assert cluster.calls[2:] == [("floor", 2), ("request", 0)]
    await store.add(SHOW)
    clock.t = SHOW.start_ts
    await applier.step()
    await store.remove("show")  # cancelled mid-show: capacity goes at the next tick
    await applier.step()
    assert cluster.calls[4:] == [("request", 5), ("floor", 4), ("floor", 2), ("request", 0)]


async def test_observation_is_written_with_a_ttl(store, aredis_client):
    cluster, clock = Cluster(), Clock()
    applier = Applier(MODEL, store, cluster.effects(), clock)
    await applier.observe(None)
    seen = await store.observed()
    assert seen["nodes"] == [] and seen["last_error"] is None
    from cluster import keys

    assert 0 < await aredis_client.ttl(keys.CAPACITY_OBSERVED) <= keys.CAPACITY_OBSERVED_TTL_S
