"""Pure core: the session state machine and the protocol parser (no I/O)."""

import json

import pytest

from actors.chat import protocol
from actors.chat.protocol import Join, Leave, Send
from actors.chat.session import Close, Limits, Reply, Session, TokenBucket
from cluster.codes import CloseCode, ErrorCode
from cluster.tokens import Claims

LIMITS = Limits(max_text_len=10, max_frame_bytes=200, rate_per_s=10, rate_burst=5, max_rooms=2)
T0 = 1_000.0


def session(role="fan", rooms=None, exp=T0 + 3600):
    return Session(Claims("alice", role, exp, frozenset(rooms) if rooms is not None else None), LIMITS, T0)


def codes(actions):
    return [json.loads(a.frame).get("code") for a in actions if isinstance(a, Reply)]


def frame(**kw):
    return json.dumps(kw)


def test_join_send_leave_flow():
    s = session()
    assert s.receive(frame(op="join", room="lobby"), T0) == [Join("lobby")]
    acts = s.receive(frame(op="send", room="lobby", id="m1", text="hi", user="mallory"), T0)
    assert acts == [Send("lobby", "m1", "hi")]  # no user field survives: sender is the token's sub
    acts = s.receive(frame(op="leave", room="lobby"), T0)
    assert acts[0] == Leave("lobby") and json.loads(acts[1].frame) == {"op": "left", "room": "lobby"}
    assert codes(s.receive(frame(op="send", room="lobby", id="m2", text="x"), T0)) == [ErrorCode.NOT_JOINED]


def test_join_with_since_and_epoch():
    s = session()
    assert s.receive(frame(op="join", room="r", since=5, epoch="e1"), T0) == [Join("r", 5, "e1")]


@pytest.mark.parametrize("raw,code", [
    ("not json", ErrorCode.BAD_FRAME),
    ("[1,2]", ErrorCode.BAD_FRAME),
    (frame(op="dance"), ErrorCode.UNKNOWN_OP),
    (frame(room="r"), ErrorCode.UNKNOWN_OP),
    (frame(op="join", room="bad room!"), ErrorCode.BAD_ROOM),
    (frame(op="join", room="x" * 65), ErrorCode.BAD_ROOM),
    (frame(op="join", room="r", since=-1), ErrorCode.BAD_SINCE),
    (frame(op="join", room="r", since=True), ErrorCode.BAD_SINCE),
    (frame(op="join", room="r", since=1, epoch=5), ErrorCode.BAD_SINCE),
    (frame(op="send", room="r", text="x"), ErrorCode.BAD_ID),
    (frame(op="send", room="r", id="", text="x"), ErrorCode.BAD_ID),
    (frame(op="send", room="r", id="a" * 65, text="x"), ErrorCode.BAD_ID),
    (frame(op="leave", room="never"), ErrorCode.NOT_JOINED),
])
def test_bad_frames_get_their_code(raw, code):
    assert codes(session().receive(raw, T0)) == [code]


def test_text_length_and_type():
    s = session()
    s.receive(frame(op="join", room="r"), T0)
    too_long = s.receive(frame(op="send", room="r", id="a", text="x" * 11), T0)
    assert codes(too_long) == [ErrorCode.TEXT_TOO_LONG]
    assert json.loads(too_long[0].frame)["id"] == "a"  # the client learns which send failed
    assert codes(s.receive(frame(op="send", room="r", id="b", text=""), T0)) == [ErrorCode.TEXT_TOO_LONG]
    assert codes(s.receive(frame(op="send", room="r", id="c", text=5), T0)) == [ErrorCode.BAD_FRAME]
    assert s.receive(frame(op="send", room="r", id="d", text="é" * 10), T0) == [Send("r", "d", "é" * 10)]


def test_binary_frame_is_an_error_not_a_close():
    assert codes(session().receive(b"\x00\x01", T0)) == [ErrorCode.BINARY_FRAME]


def test_oversized_frame_closes_4009_counting_utf8_bytes():
    s = session()
    # 60 four-byte characters: 60 chars but 240 bytes > 200.
    acts = s.receive(frame(op="ping", pad="😀" * 60), T0)
    assert acts == [Close(CloseCode.FRAME_TOO_BIG, "frame over 200 bytes")]
    assert s.receive(frame(op="ping"), T0) == []  # closed sessions ignore everything


def test_private_rooms_need_the_claim_and_ops_may_join():
    assert codes(session().receive(frame(op="join", room="$vip"), T0)) == [ErrorCode.FORBIDDEN_ROOM]
    assert codes(session(rooms=["$other"]).receive(frame(op="join", room="$vip"), T0)) == [ErrorCode.FORBIDDEN_ROOM]
    assert session(rooms=["$vip"]).receive(frame(op="join", room="$vip"), T0) == [Join("$vip")]
    assert session(role="ops").receive(frame(op="join", room="$vip"), T0) == [Join("$vip")]


def test_room_limits_and_double_join():
    s = session()
    s.receive(frame(op="join", room="a"), T0)
    assert codes(s.receive(frame(op="join", room="a"), T0)) == [ErrorCode.ALREADY_JOINED]
    s.receive(frame(op="join", room="b"), T0)
    assert codes(s.receive(frame(op="join", room="c"), T0)) == [ErrorCode.TOO_MANY_ROOMS]
    s.join_failed("b")
    assert s.receive(frame(op="join", room="c"), T0) == [Join("c")]


def test_rate_limit_then_flood_close():
    s = session()
    s.receive(frame(op="join", room="r"), T0)
    results = [s.receive(frame(op="send", room="r", id=f"m{i}", text="x"), T0) for i in range(20)]
    sends = [r for r in results if r and isinstance(r[0], Send)]
    limited = [r for r in results if codes(r) == [ErrorCode.RATE_LIMITED]]
    assert len(sends) == 4  # burst 5, one token went to the join
    assert json.loads(limited[0][0].frame)["id"] == "m4"  # tells which send to retry
    assert len(limited) == LIMITS.rate_burst  # warned burst times...
    assert results[4 + LIMITS.rate_burst] == [Close(CloseCode.FLOOD, "flood: kept sending while rate limited")]
    assert all(r == [] for r in results[5 + LIMITS.rate_burst:])  # ...then closed, deaf


def test_rate_limit_refills_and_strikes_reset():
    s = session()
    for _ in range(5):
        s.receive(frame(op="ping"), T0)
    assert codes(s.receive(frame(op="ping"), T0)) == [ErrorCode.RATE_LIMITED]
    assert json.loads(s.receive(frame(op="ping"), T0 + 0.1)[0].frame) == {"op": "pong"}
    assert s.strikes == 0


def test_expired_token_closes_4001():
    s = session(exp=T0 + 1)
    assert s.receive(frame(op="ping"), T0 + 1) == [Close(CloseCode.UNAUTHORIZED, "token expired")]


def test_token_bucket():
    b = TokenBucket(rate=2, burst=2, now=0)
    assert [b.take(0), b.take(0), b.take(0)] == [True, True, False]
    assert b.take(0.5) and not b.take(0.5)
    assert b.take(100) and b.tokens == 1  # never above burst


def test_server_frames_are_compact_json():
    assert protocol.messages("r", ['{"offset":1}', '{"offset":2}']) == \
        '{"op":"messages","room":"r","messages":[{"offset":1},{"offset":2}]}'
    assert json.loads(protocol.error(ErrorCode.RATE_LIMITED, "x")) == \
        {"op": "error", "code": 106, "reason": "rate limited; slow down", "id": "x"}
    assert json.loads(protocol.joined("r", 3, "e", True)) == \
        {"op": "joined", "room": "r", "offset": 3, "epoch": "e", "recovered": True}
