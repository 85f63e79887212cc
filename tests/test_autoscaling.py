"""Pure core: chat autoscaling in units of connections."""

from types import SimpleNamespace

from serve.autoscaling import ConnectionsPolicy, decide, replicas_for


def test_replicas_for_connections():
    assert replicas_for(0, 25_000) == 1
    assert replicas_for(25_000, 25_000) == 1
    assert replicas_for(25_001, 25_000) == 2
    assert replicas_for(100_000, 25_000) == 4


def test_scale_up_at_once_down_only_after_the_delay():
    assert decide(2, 4, now=0, below_since=None, downscale_delay_s=600) == (4, None)
    assert decide(4, 2, now=10, below_since=None, downscale_delay_s=600) == (4, 10)
    assert decide(4, 2, now=500, below_since=10, downscale_delay_s=600) == (4, 10)
    assert decide(4, 2, now=610, below_since=10, downscale_delay_s=600) == (2, None)
    assert decide(4, 4, now=620, below_since=10, downscale_delay_s=600) == (4, None)  # dip over


def ctx(per_replica, target, now, state=None):
    return SimpleNamespace(aggregated_metrics={"connections": per_replica} if per_replica is not None else {},
                           target_num_replicas=target, current_time=now, policy_state=state or {})


def test_policy_reads_the_connections_metric():
    policy = ConnectionsPolicy(fans_per_replica=1000, downscale_delay_s=60)
    assert policy(ctx({"a": 900.0, "b": 1300.0}, 2, 0))[0] == 3
    replicas, state = policy(ctx({"a": 10.0, "b": 10.0}, 3, 100))
    assert replicas == 3 and state["below_since"] == 100
    assert policy(ctx({"a": 10.0, "b": 10.0}, 3, 170, state))[0] == 1
    assert policy(ctx(None, 5, 0))[0] == 5  # no reports yet: hold
