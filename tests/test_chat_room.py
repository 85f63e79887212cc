"""Pure core: per-replica room ordering and batching, and wire framing."""

import pytest
from websockets.frames import Frame, Opcode

from actors.chat.keepalive import Due, due
from actors.chat.room import PRESENCE_REFRESH_S, Accept, Room, presence_due
from actors.chat.wsframe import text_frame


def test_accepts_in_order_drops_duplicates_flags_gaps():
    r = Room("r", "e", cursor=4)
    assert r.accept(5, '{"offset":5}') is Accept.OK
    assert r.accept(5, '{"offset":5}') is Accept.DUPLICATE
    assert r.accept(3, '{"offset":3}') is Accept.DUPLICATE
    assert r.accept(7, '{"offset":7}') is Accept.GAP
    assert r.cursor == 5 and r.pending == ['{"offset":5}']


def test_take_frame_batches_and_clears():
    r = Room("r", "e", cursor=0)
    assert r.take_frame() is None
    r.accept(1, '{"offset":1}')
    r.accept(2, '{"offset":2}')
    assert r.take_frame() == '{"op":"messages","room":"r","messages":[{"offset":1},{"offset":2}]}'
    assert r.take_frame() is None


def test_reset_starts_a_new_epoch_at_zero():
    r = Room("r", "e1", cursor=9)
    r.held.append(("e1", 11, "{}"))
    r.reset("e2")
    assert (r.epoch, r.cursor, r.held) == ("e2", 0, [])
    assert r.accept(1, "{}") is Accept.OK


@pytest.mark.parametrize("n", [0, 1, 125, 126, 65535, 65536, 200_000])
def test_text_frame_matches_websockets_serialization(n):
    payload = ("x" * n).encode()
    expected = Frame(Opcode.TEXT, payload).serialize(mask=False, extensions=[])
    assert text_frame(payload) == expected


def test_presence_small_rooms_see_every_change_big_rooms_only_real_moves():
    assert presence_due(None, 1, 0.0)                      # first count is always sent
    assert not presence_due((40, 0.0), 40, 100.0)          # unchanged: never resent
    assert presence_due((40, 0.0), 41, 0.1)                # small room: any change
    assert presence_due((999, 0.0), 1_000, 0.1)
    assert not presence_due((50_000, 0.0), 54_000, 1.0)    # 8% in a big room: held
    assert presence_due((50_000, 0.0), 55_001, 1.0)        # > 10%: sent now
    assert presence_due((50_000, 0.0), 44_000, 1.0)        # leaving counts as much as joining
    assert presence_due((50_000, 0.0), 50_001, PRESENCE_REFRESH_S)  # a held wiggle goes out later


def test_keepalive_pings_only_idle_connections_and_cuts_after_two_silent_intervals():
    iv = 30.0
    assert due(100.0, last_rx=80.0, ping_at=None, interval=iv) is Due.WAIT   # heard 20 s ago
    assert due(100.0, last_rx=70.0, ping_at=None, interval=iv) is Due.PING   # idle 30 s
    assert due(100.0, last_rx=70.0, ping_at=100.0, interval=iv) is Due.WAIT  # just pinged
    assert due(159.0, last_rx=70.0, ping_at=100.0, interval=iv) is Due.WAIT  # late pong is fine
    assert due(161.0, last_rx=70.0, ping_at=100.0, interval=iv) is Due.CUT   # 2 intervals unanswered
    assert due(120.0, last_rx=100.5, ping_at=100.0, interval=iv) is Due.WAIT  # answered
    assert due(131.0, last_rx=100.5, ping_at=100.0, interval=iv) is Due.PING  # idle again: next ping


def test_members_are_owed_exactly_the_frames_queued_after_they_joined():
    r = Room("r", "e", cursor=0)
    r.queue(b"lost")            # nobody in the room: owed to nobody
    assert r.out == []
    r.add("a")
    r.queue(b"1")
    r.add("b")                  # joins after frame 1: owed only what comes next
    r.queue(b"2")
    end = r.out_end
    assert r.owed(r.members["a"], end) == b"12" and r.owed(r.members["b"], end) == b"2"
    r.members["b"] = end        # b written; a still owes both
    r.trim()
    assert r.out == [b"1", b"2"]
    r.members["a"] = end
    r.trim()
    assert r.out == [] and r.out_end == end
    r.discard("a")
    r.discard("a")              # idempotent
    assert list(r.members) == ["b"]
