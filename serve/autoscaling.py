"""Chat autoscaling in units of connections, not requests.

Chat sockets bypass Serve's request path (serve/ws_gateway.py), so ongoing-request
counts say nothing. Each replica reports its open connections through
``record_autoscaling_stats``; this policy asks for enough replicas to keep each at or
under ``fans_per_replica``. Serve then clamps the answer to min/max replicas, which
is where the concert calendar's floor (issue 5) is applied.

Hysteresis is Serve's, not ours: Ray 2.60 wraps every custom policy in its own
``upscale_delay_s``/``downscale_delay_s`` logic (serve/config.py sets them). A second
delay inside the policy fought that one: the policy alternated between "keep" and
"shrink", which reset Serve's timer every tick, so the chat tier never scaled down
(measured; see tests/test_chat_floor.py). Removing a replica cuts its sockets (fans
reconnect and resume), hence the long default downscale delay.
"""

from __future__ import annotations

import math

CONNECTIONS_METRIC = "connections"


def replicas_for(connections: float, fans_per_replica: int) -> int:
    """Replicas needed so none holds more than ``fans_per_replica`` connections."""
    return max(1, math.ceil(connections / max(1, fans_per_replica)))


class ConnectionsPolicy:
    """Serve custom autoscaling policy (a class so it gets its kwargs)."""

    def __init__(self, fans_per_replica: int = 25_000):
        self.fans_per_replica = fans_per_replica

    def __call__(self, ctx):
        per_replica = (ctx.aggregated_metrics or {}).get(CONNECTIONS_METRIC, {})
        state = dict(ctx.policy_state or {})
        if not per_replica:  # no reports yet (replicas starting): keep what we have
            return ctx.target_num_replicas, state
        return replicas_for(sum(per_replica.values()), self.fans_per_replica), state
