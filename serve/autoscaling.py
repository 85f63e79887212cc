"""Chat autoscaling in units of connections, not requests.

Chat sockets bypass Serve's request path (serve/ws_gateway.py), so ongoing-request
counts say nothing. Each replica reports its open connections through
``record_autoscaling_stats``; this policy asks for enough replicas to keep each at or
under ``fans_per_replica``. Serve then clamps the answer to min/max replicas, which
is where the concert calendar's floor (issue 5) is applied.
"""

from __future__ import annotations

import math
import time

CONNECTIONS_METRIC = "connections"


def replicas_for(connections: float, fans_per_replica: int) -> int:
    """Replicas needed so none holds more than ``fans_per_replica`` connections."""
    return max(1, math.ceil(connections / max(1, fans_per_replica)))


def decide(current: int, wanted: int, now: float, below_since: float | None,
           downscale_delay_s: float) -> tuple[int, float | None]:
    """(replicas, new below_since): scale up at once, down only after a quiet delay.

    Removing a chat replica cuts its sockets (fans reconnect and resume), so a dip in
    connections must last ``downscale_delay_s`` before we shrink.
    """
    if wanted >= current:
        return wanted, None
    if below_since is None:
        return current, now
    if now - below_since >= downscale_delay_s:
        return wanted, None
    return current, below_since


class ConnectionsPolicy:
    """Serve custom autoscaling policy (a class so it gets its kwargs)."""

    def __init__(self, fans_per_replica: int = 25_000, downscale_delay_s: float = 600.0):
        self.fans_per_replica = fans_per_replica
        self.downscale_delay_s = downscale_delay_s

    def __call__(self, ctx):
        per_replica = (ctx.aggregated_metrics or {}).get(CONNECTIONS_METRIC, {})
        state = dict(ctx.policy_state or {})
        if not per_replica:  # no reports yet (replicas starting): keep what we have
            return ctx.target_num_replicas, state
        wanted = replicas_for(sum(per_replica.values()), self.fans_per_replica)
        replicas, state["below_since"] = decide(
            ctx.target_num_replicas, wanted, ctx.current_time or time.time(), state.get("below_since"),
            self.downscale_delay_s)
        return replicas, state
