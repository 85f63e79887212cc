"""Concert validation: every bad input is refused with invalid_concert and a fix-it message."""

from datetime import UTC, datetime, timedelta

import pytest

from cluster.calendar import Concert, loads, merge, parse_concert
from cluster.errors import InvalidInput

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def body(**kw):
    base = {"title": "Night", "starts_at": "2026-03-02T20:00:00+01:00",
            "ends_at": "2026-03-02T23:00:00+01:00", "expected_audience": 50_000}
    return {k: v for k, v in {**base, **kw}.items() if v is not ...}


def refused(data, *must_mention, now=NOW):
    with pytest.raises(InvalidInput) as e:
        parse_concert(data, now=now)
    assert e.value.code == "invalid_concert" and e.value.status == 422
    for word in must_mention:
        assert word in e.value.message, e.value.message
    return e.value.message


def test_a_valid_concert_round_trips():
    c = parse_concert(body(id="n1", region="eu-west-1", live_ladders=2), now=NOW)
    assert isinstance(c, Concert) and c.id == "n1" and c.live_ladders == 2
    assert c.end_ts - c.start_ts == 3 * 3600
    assert loads(c.dumps()) == c
    assert parse_concert(body(), now=NOW).id.startswith("c-")  # generated when absent


@pytest.mark.parametrize("audience", [0, -5, True, 2.5, "many", None])
def test_audience_must_be_a_positive_whole_number(audience):
    refused(body(expected_audience=audience), "expected_audience")


def test_end_before_or_at_start_is_impossible():
    msg = refused(body(ends_at="2026-03-02T19:00:00+01:00"), "ends_at", "must be after starts_at")
    assert "2026-03-02T19:00:00+01:00" in msg
    refused(body(ends_at="2026-03-02T20:00:00+01:00"), "must be after")


def test_entirely_in_the_past_is_refused_but_already_running_is_fine():
    refused(body(starts_at="2026-03-01T08:00:00Z", ends_at="2026-03-01T11:00:00Z"), "in the past")
    running = parse_concert(body(starts_at="2026-03-01T11:00:00Z", ends_at="2026-03-01T14:00:00Z"),
                            now=NOW)
    assert running.start_ts < NOW.timestamp() < running.end_ts


def test_implausible_duration():
    refused(body(ends_at="2026-03-05T23:00:00+01:00"), "lasts 75.0 h", "at most 24 h", "split")


def test_times_need_an_offset_or_a_zone():
    refused(body(starts_at="2026-03-02T20:00:00"), "starts_at", "no UTC offset")
    refused(body(starts_at="tomorrow"), "starts_at", "not ISO 8601")
    refused(body(starts_at=...), "starts_at")
    c = parse_concert(body(starts_at="2026-03-02T20:00", ends_at="2026-03-02T23:00",
                           timezone="Europe/Berlin"), now=NOW)
    assert c.starts_at.utcoffset() == timedelta(hours=1)
    z = parse_concert(body(starts_at="2026-03-02T19:00:00Z", ends_at="2026-03-02T22:00:00Z"), now=NOW)
    assert z.start_ts == c.start_ts


def test_dst_gap_and_overlap_are_refused_not_guessed():
    # Europe/Berlin: 2026-03-29 02:00 -> 03:00 (gap); 2026-10-25 03:00 -> 02:00 (overlap).
    msg = refused(body(starts_at="2026-03-29T02:30", ends_at="2026-03-29T05:00",
                       timezone="Europe/Berlin"), "does not exist", "jump forward")
    assert "starts_at" in msg
    msg = refused(body(starts_at="2026-10-25T02:30", ends_at="2026-10-25T05:00",
                       timezone="Europe/Berlin"), "happens twice", "+0200", "+0100")
    # With the offset spelled out, the second 02:30 is accepted.
    c = parse_concert(body(starts_at="2026-10-25T02:30:00+01:00", ends_at="2026-10-25T05:00:00+01:00",
                           timezone="Europe/Berlin"), now=NOW)
    assert c.starts_at.utcoffset() == timedelta(hours=1)


def test_offset_that_contradicts_the_zone():
    refused(body(starts_at="2026-07-02T20:00:00+01:00", ends_at="2026-07-02T23:00:00+02:00",
                 timezone="Europe/Berlin"), "offset +0100 does not match Europe/Berlin")
    # UTC with a display zone is fine: shown in the zone, same instant.
    c = parse_concert(body(starts_at="2026-07-02T18:00:00Z", ends_at="2026-07-02T21:00:00Z",
                           timezone="Europe/Berlin"), now=NOW)
    assert c.starts_at.isoformat() == "2026-07-02T20:00:00+02:00"


def test_unknown_zone_field_and_bad_strings():
    refused(body(timezone="Mars/Olympus"), "IANA")
    refused(body(colour="red"), "unknown field", "colour")
    refused(body(title=""), "title")
    refused(body(id="no spaces"), "id:")
    refused(body(region="EU West"), "region")
    refused(body(live_ladders=-1), "live_ladders")
    refused(["not", "an", "object"], "JSON object")


def test_all_problems_reported_at_once():
    msg = refused(body(title="", expected_audience=0, live_ladders=99), "title", "expected_audience",
                  "live_ladders")
    assert msg.count(";") >= 2


def test_merge_for_updates_keeps_instants_when_the_zone_changes():
    c = parse_concert(body(id="m"), now=NOW)
    moved = parse_concert(merge(c, {"timezone": "America/New_York"}), now=NOW, concert_id="m")
    assert (moved.start_ts, moved.end_ts) == (c.start_ts, c.end_ts)
    assert moved.starts_at.utcoffset() == timedelta(hours=-5)
    later = parse_concert(merge(c, {"expected_audience": 70_000}), now=NOW, concert_id="m")
    assert later.expected_audience == 70_000 and later.start_ts == c.start_ts
    refused(merge(c, {"ends_at": "2026-03-02T19:00:00+01:00"}), "must be after")


def test_url_id_and_body_id_must_agree():
    with pytest.raises(InvalidInput, match="URL says"):
        parse_concert(body(id="a"), now=NOW, concert_id="b")
