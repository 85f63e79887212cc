"""When to ping a connection and when to give up on it: the keepalive rule, pure.

One sweep per replica applies this rule to every connection (serve/ws_gateway.py)
instead of websockets' keepalive task per socket, which was ~43% of a busy
replica's samples at ~8,000 sockets (docs/architecture.md). A connection that sent
anything recently needs no ping; an idle one is pinged once per interval; a ping
that nothing answers within two intervals means the peer is gone.

The timeout is generous on purpose: a phone on a bad network, or a load generator
sharing the server's cores, may answer tens of seconds late while its TCP
connection is perfectly alive — and a lagging reader is the slow-consumer rule's
business (close 4010), not this one's.
"""

from __future__ import annotations

from enum import Enum

TIMEOUT_INTERVALS = 2.0  # an unanswered ping is given this many ping intervals
SWEEPS_PER_INTERVAL = 10  # how often the replica applies the rule per ping interval


class Due(Enum):
    WAIT = "wait"
    PING = "ping"
    CUT = "cut"


def due(now: float, last_rx: float, ping_at: float | None, interval: float) -> Due:
    """What the sweep does to a connection last heard from at ``last_rx`` whose last
    ping went out at ``ping_at`` (None: never pinged)."""
    if ping_at is not None and last_rx < ping_at:  # that ping is not answered yet
        return Due.CUT if now - ping_at > TIMEOUT_INTERVALS * interval else Due.WAIT
    return Due.PING if now - last_rx >= interval else Due.WAIT
