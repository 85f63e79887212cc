"""`fandom schedule` and `fandom capacity` against a real Redis (in-process CLI)."""

import json

import pytest

from cluster.cli import main


@pytest.fixture
def cli(component_redis_url, monkeypatch, capsys):
    # Explicit, because the session's Ray fixture exports the stack's FANDOM_* settings.
    for name, value in {"FANDOM_REDIS_URL": component_redis_url, "FANDOM_CAPACITY_CLOCK": "system",
                        "FANDOM_CAPACITY_LEAD_S": "1800", "FANDOM_CAPACITY_HOLD_S": "900",
                        "FANDOM_CAPACITY_HEADROOM": "1.25", "FANDOM_FANS_PER_REPLICA": "25000",
                        "FANDOM_CHAT_REPLICAS": "2", "FANDOM_CHAT_MAX_REPLICAS": "8",
                        "FANDOM_CAPACITY_REGION": ""}.items():
        monkeypatch.setenv(name, value)

    def run(*argv):
        code = main(list(argv))
        out = capsys.readouterr()
        return code, out.out, out.err

    return run


def test_schedule_add_list_update_remove(cli):
    code, out, _ = cli("schedule", "add", "--id", "arena", "--title", "Arena", "--starts",
                       "2031-07-01T20:00", "--ends", "2031-07-01T23:00", "--tz", "Europe/Berlin",
                       "--audience", "120000", "--ladders", "2")
    assert code == 0 and "added arena" in out and "2031-07-01T20:00:00+02:00" in out
    code, out, err = cli("schedule", "add", "--id", "arena", "--title", "Again", "--starts",
                         "2031-07-01T20:00:00Z", "--ends", "2031-07-01T21:00:00Z", "--audience", "5")
    assert code == 2 and err.startswith("error[concert_exists]")
    code, out, _ = cli("schedule", "update", "arena", "--audience", "200000")
    assert code == 0 and "200,000" in out
    code, out, _ = cli("schedule", "list", "--json")
    listed = json.loads(out)["concerts"]
    assert [(c["id"], c["expected_audience"], c["phase"]) for c in listed] == [("arena", 200000, "upcoming")]
    assert cli("schedule", "remove", "arena")[0] == 0
    code, _, err = cli("schedule", "remove", "arena")
    assert code == 2 and err.startswith("error[concert_not_found]")


def test_schedule_add_refuses_bad_input_with_the_code(cli):
    code, _, err = cli("schedule", "add", "--title", "x", "--starts", "2031-07-01T23:00:00Z",
                       "--ends", "2031-07-01T20:00:00Z", "--audience", "-3")
    assert code == 2 and err.startswith("error[invalid_concert]")
    assert "must be after starts_at" in err and "expected_audience" in err
    assert "no concerts" in cli("schedule", "list")[1]


def test_capacity_plan_at_a_time_with_timeline(cli):
    cli("schedule", "add", "--id", "a", "--title", "A", "--starts", "2031-07-01T20:00:00+02:00",
        "--ends", "2031-07-01T23:00:00+02:00", "--audience", "100000", "--ladders", "1")
    cli("schedule", "add", "--id", "b", "--title", "B", "--starts", "2031-07-01T22:00:00+02:00",
        "--ends", "2031-07-02T00:00:00+02:00", "--audience", "50000")
    code, out, _ = cli("capacity", "plan", "--at", "2031-07-01T22:30", "--tz", "Europe/Berlin",
                       "--json")
    assert code == 0
    doc = json.loads(out)
    # 25k fans/replica x 1.25 head-room -> 5 + 3 replicas; lead 30 min, hold 15 min.
    assert doc["plan"]["chat_floor"] == 8 and len(doc["plan"]["bundles"]) == 9
    assert {a["concert_id"] for a in doc["plan"]["active"]} == {"a", "b"}
    floors = [(t["chat_floor"], [a["concert_id"] for a in t["active"]]) for t in doc["timeline"]]
    assert floors[0] == (8, ["a", "b"]) and floors[-1] == (2, [])
    code, out, _ = cli("capacity", "plan", "--at", "2031-07-01T19:29:00+02:00", "--tz", "Europe/Berlin")
    assert code == 0 and "chat floor     2" in out and "next change    2031-07-01T19:30+02:00" in out
    assert "timeline, next 24 h" in out and "a:lead" in out and "b:hold" in out


def test_capacity_override_status_log_and_clock(cli):
    code, _, err = cli("capacity", "override", "--chat-replicas", "4", "--until",
                       "2020-01-01T00:00:00Z", "--reason", "x")
    assert code == 2 and err.startswith("error[invalid_override]")
    assert cli("capacity", "override", "--chat-replicas", "4", "--until", "2099-01-01T00:00:00Z",
               "--reason", "sound check")[0] == 0
    assert "floor     4" in cli("capacity", "plan")[1]
    assert cli("capacity", "override", "--clear")[0] == 0
    code, out, _ = cli("capacity", "status")
    assert code == 1 and "NOT RUNNING" in out  # no applier on this Redis
    assert cli("capacity", "log")[0] == 0
    code, out, _ = cli("capacity", "clock", "--set", "2031-07-01T18:00:00Z")
    assert code == 0 and "2031-07-01T18:00:00+00:00" in out and "ignored" in out


def test_no_redis_configured(cli, monkeypatch):
    monkeypatch.setenv("FANDOM_REDIS_URL", "")
    code, _, err = cli("schedule", "list")
    assert code == 2 and err.startswith("error[config_invalid]") and "FANDOM_REDIS_URL" in err
