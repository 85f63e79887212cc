"""The fan-out benchmark's load generator against the shared stack: correctness only.

A handful of fans in one room (spread over both chat replicas by SO_REUSEPORT) and
two publishers; every fan must receive every accepted message exactly once and in
offset order. Never asserts on timing: that is what bench/chat_fanout.py reports.
"""

import uuid

import pytest

from bench.fanout_plan import Workload, final_offsets, plan
from bench.loadgen import Fleet

pytestmark = pytest.mark.e2e


def test_loadgen_counts_every_message_exactly_once(stack):
    w = Workload("concert", fans=12, rooms=1, rate=8.0, duration_s=2.0)
    plans = plan(w, workers=2, tag=uuid.uuid4().hex[:8])
    assert sum(len(p.publishers) for p in plans) == 2  # 8 msg/s over two publishers
    fleet = Fleet(plans, proto="fandom", url=stack.ws,
                  tokens=[stack.token(f"fan{i}") for i in range(w.fans)],
                  pub_tokens=[stack.token(f"pub{i}") for i in range(2)])
    try:
        connected = fleet.connect(timeout_s=60)
        assert sum(c["ok"] for c in connected) == w.fans + 2
        fleet.publish(w.duration_s)
        published = fleet.published(timeout_s=60)
        final = final_offsets(published)
        fleet.drain(final, max_s=30)
        reports = fleet.report(final)
    finally:
        fleet.close()
    sent = sum(p["sent"] for p in published)
    assert sent > 0 and sum(p["acked"] for p in published) == sent
    assert list(final.values()) == [sent]  # one room, offsets 1..sent
    assert sum(r["joined"] for r in reports) == w.fans
    assert sum(r["expected"] for r in reports) == w.fans * sent
    assert sum(r["received"] for r in reports) == w.fans * sent
    assert sum(r["lost"] for r in reports) == 0
    assert sum(r["duplicated"] for r in reports) == 0
    assert sum(r["out_of_order"] for r in reports) == 0
