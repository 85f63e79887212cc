"""The pure capacity planner: windows, overlaps, boundaries, zones, horizon, caps, packing."""

from datetime import UTC, datetime, timedelta

import pytest

from cluster.calendar import parse_concert
from cluster.capacity import CapacityModel, Override, pack, plan_at, timeline

NOW = datetime(2026, 7, 1, 12, 0, tzinfo=UTC)
MODEL = CapacityModel(fans_per_replica=10_000, cpus_per_replica=1.0, cpus_per_ladder=4.0,
                      lead_s=1800, hold_s=900, headroom=1.0, base_floor=2, max_replicas=50)
CHAT = {"CPU": 1.0, "fandom_chat": 1.0}
LADDER = {"CPU": 4.0, "fandom_transcode": 1.0}


def concert(cid, start, end, audience=50_000, **kw):
    return parse_concert({"id": cid, "title": cid, "starts_at": start.isoformat(),
                          "ends_at": end.isoformat(), "expected_audience": audience, **kw}, now=NOW)


def ts(dt):
    return dt.timestamp()


SHOW = concert("show", NOW + timedelta(hours=2), NOW + timedelta(hours=4), audience=50_000,
               live_ladders=2)
OPENS = NOW + timedelta(hours=2) - timedelta(seconds=1800)
CLOSES = NOW + timedelta(hours=4) + timedelta(seconds=900)


def test_nothing_planned_before_the_lead_window():
    p = plan_at([SHOW], ts(OPENS) - 1, MODEL)
    assert (p.chat_floor, p.bundles, p.active) == (2, [], [])
    assert p.next_change_at == ts(OPENS)


def test_single_concert_in_its_window():
    p = plan_at([SHOW], ts(OPENS), MODEL)  # the window opens exactly at starts_at - lead
    assert p.chat_floor == 5
    assert p.bundles == [CHAT] * 5 + [LADDER] * 2
    assert [(a.concert_id, a.phase) for a in p.active] == [("show", "lead")]
    assert p.next_change_at == SHOW.start_ts
    assert plan_at([SHOW], SHOW.start_ts, MODEL).active[0].phase == "live"
    assert plan_at([SHOW], SHOW.end_ts, MODEL).active[0].phase == "hold"


def test_released_exactly_when_the_hold_ends():
    assert plan_at([SHOW], ts(CLOSES) - 0.001, MODEL).chat_floor == 5
    p = plan_at([SHOW], ts(CLOSES), MODEL)
    assert (p.chat_floor, p.bundles, p.active, p.next_change_at) == (2, [], [], None)


def test_overlapping_concerts_add_up():
    other = concert("other", NOW + timedelta(hours=3), NOW + timedelta(hours=5), audience=30_000,
                    live_ladders=1)
    p = plan_at([SHOW, other], ts(NOW + timedelta(hours=3, minutes=30)), MODEL)
    assert p.chat_floor == 5 + 3
    assert p.bundles.count(CHAT) == 8 and p.bundles.count(LADDER) == 3
    assert {a.concert_id for a in p.active} == {"show", "other"}
    # Back-to-back: the first one's hold overlaps the second one's lead.
    later = concert("later", NOW + timedelta(hours=4, minutes=20), NOW + timedelta(hours=6),
                    audience=10_000)
    p = plan_at([SHOW, later], ts(NOW + timedelta(hours=4, minutes=5)), MODEL)
    assert p.chat_floor == 5 + 1
    assert sorted((a.concert_id, a.phase) for a in p.active) == [("later", "lead"), ("show", "hold")]


def test_small_concert_never_lowers_the_everyday_floor():
    tiny = concert("tiny", NOW + timedelta(minutes=10), NOW + timedelta(hours=1), audience=100)
    p = plan_at([tiny], ts(NOW), MODEL)
    assert p.chat_floor == 2 and p.bundles == [CHAT] * 2  # the floor is what must fit


def test_headroom_rounds_up():
    m = CapacityModel(fans_per_replica=10_000, headroom=1.25, base_floor=1, max_replicas=50)
    assert m.replicas_for(10_000) == 2 and m.replicas_for(8_000) == 1 and m.replicas_for(8_001) == 2


def test_floor_capped_at_max_replicas_with_a_warning():
    huge = concert("huge", NOW + timedelta(minutes=10), NOW + timedelta(hours=2), audience=2_000_000)
    p = plan_at([huge], ts(NOW), MODEL)
    assert p.chat_floor == 50 and p.bundles.count(CHAT) == 50
    assert "capped" in p.warnings[0] and "200" in p.warnings[0]


def test_far_future_concerts_are_ignored():
    far = concert("far", NOW + timedelta(days=300), NOW + timedelta(days=300, hours=2))
    p = plan_at([far], ts(NOW), MODEL)
    assert (p.chat_floor, p.bundles, p.active, p.next_change_at) == (2, [], [], None)
    assert [s.plan.chat_floor for s in timeline([far], ts(NOW), ts(NOW) + 86400, MODEL)] == [2]


def test_region_filter():
    eu = concert("eu", NOW + timedelta(minutes=5), NOW + timedelta(hours=1), region="eu-west-1")
    us = concert("us", NOW + timedelta(minutes=5), NOW + timedelta(hours=1), region="us-east-1",
                 audience=90_000)
    anywhere = concert("any", NOW + timedelta(minutes=5), NOW + timedelta(hours=1), audience=10_000)
    m = CapacityModel(**{**MODEL.__dict__, "region": "eu-west-1"})
    assert {a.concert_id for a in plan_at([eu, us, anywhere], ts(NOW), m).active} == {"eu", "any"}
    assert len(plan_at([eu, us, anywhere], ts(NOW), MODEL).active) == 3


def test_override_is_a_minimum_until_it_expires():
    ov = Override(chat_replicas=7, live_ladders=1, until=ts(NOW + timedelta(hours=1)), reason="r")
    p = plan_at([], ts(NOW), MODEL, ov)
    assert p.chat_floor == 7 and p.bundles == [CHAT] * 7 + [LADDER]
    assert p.next_change_at == ov.until
    in_show = plan_at([SHOW], ts(OPENS), MODEL, Override(chat_replicas=3, until=ts(CLOSES)))
    assert in_show.chat_floor == 5  # a smaller override does not cut the calendar's plan
    assert plan_at([], ov.until, MODEL, ov).chat_floor == 2  # expired


def test_timeline_over_24h():
    segs = timeline([SHOW], ts(NOW), ts(NOW) + 86400, MODEL)
    assert [(s.start, s.plan.chat_floor, [a.phase for a in s.plan.active]) for s in segs] == [
        (ts(NOW), 2, []),
        (ts(OPENS), 5, ["lead"]),
        (SHOW.start_ts, 5, ["live"]),
        (SHOW.end_ts, 5, ["hold"]),
        (ts(CLOSES), 2, []),
    ]
    assert segs[-1].end == ts(NOW) + 86400


def test_time_zones_and_dst():
    # Europe/Berlin falls back at 03:00 CEST on 2026-10-25: a 01:30-04:30 show lasts 4 h.
    now = datetime(2026, 10, 24, tzinfo=UTC)
    night = parse_concert({"title": "n", "starts_at": "2026-10-25T01:30", "ends_at":
                           "2026-10-25T04:30", "timezone": "Europe/Berlin",
                           "expected_audience": 10_000}, now=now)
    assert night.end_ts - night.start_ts == 4 * 3600
    assert night.starts_at.utcoffset() == timedelta(hours=2)
    assert night.ends_at.utcoffset() == timedelta(hours=1)
    # The same instant given in New York time plans identically.
    ny = parse_concert({"title": "n", "starts_at": "2026-10-24T19:30:00-04:00",
                        "ends_at": "2026-10-24T23:30:00-04:00", "expected_audience": 10_000}, now=now)
    assert (ny.start_ts, ny.end_ts) == (night.start_ts, night.end_ts)
    at = night.start_ts - 1800  # the lead window opens at 01:00 CEST = 23:00 UTC
    assert datetime.fromtimestamp(at, UTC) == datetime(2026, 10, 24, 23, 0, tzinfo=UTC)
    assert plan_at([night], at, MODEL).bundles == [CHAT] * 2
    assert plan_at([night], at, MODEL).active[0].phase == "lead"
    assert plan_at([night], at - 1, MODEL).active == []


def test_pack_counts_nodes_per_type_and_rejects_misfits():
    types = {"head": {"CPU": 0}, "chat": {"CPU": 8, "fandom_chat": 8},
             "transcode": {"CPU": 16, "fandom_transcode": 4}}
    assert pack([CHAT] * 17 + [LADDER] * 5, types) == {"chat": 3, "transcode": 2}
    assert pack([], types) == {}
    with pytest.raises(ValueError, match="fits no node type"):
        pack([{"CPU": 1, "gpu_thing": 1}], types)
