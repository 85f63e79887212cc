"""Pure core: chat autoscaling in units of connections, and how Serve's wrapper runs it."""

from types import SimpleNamespace

import pytest
from ray.serve import autoscaling_policy
from ray.serve.config import AutoscalingConfig

from serve.autoscaling import ConnectionsPolicy, replicas_for


def test_replicas_for_connections():
    assert replicas_for(0, 25_000) == 1
    assert replicas_for(25_000, 25_000) == 1
    assert replicas_for(25_001, 25_000) == 2
    assert replicas_for(100_000, 25_000) == 4


def ctx(per_replica, target, state=None, config=None):
    return SimpleNamespace(aggregated_metrics={"connections": per_replica} if per_replica is not None else {},
                           target_num_replicas=target, current_num_replicas=target,
                           total_num_requests=0, policy_state=state or {}, config=config)


def test_policy_reads_the_connections_metric():
    policy = ConnectionsPolicy(fans_per_replica=1000)
    assert policy(ctx({"a": 900.0, "b": 1300.0}, 2))[0] == 3
    assert policy(ctx({"a": 10.0, "b": 10.0}, 3))[0] == 1  # hysteresis is Serve's job
    assert policy(ctx(None, 5))[0] == 5  # no reports yet: hold


@pytest.fixture
def serve_loop(monkeypatch):
    """Serve 2.60's own wrapper around a custom policy, on a fake clock (0.1 s ticks)."""
    now = [1000.0]
    monkeypatch.setattr(autoscaling_policy, "time", SimpleNamespace(time=lambda: now[0]))

    def run(policy, config, target, per_replica, seconds):
        wrapped, state, history = autoscaling_policy._apply_autoscaling_config(policy), {}, []
        for _ in range(int(seconds * 10)):
            target, state = wrapped(ctx(per_replica, target, state, config))
            history.append((round(now[0] - 1000.0, 1), target))
            now[0] += 0.1
        return history

    return run


def test_serve_wrapper_scales_down_after_its_delay(serve_loop):
    # Regression: the policy used to run its own downscale delay inside Serve's, and the
    # two reset each other every tick, so the chat tier never scaled down (measured).
    config = AutoscalingConfig(min_replicas=1, max_replicas=10, upscale_delay_s=0,
                               downscale_delay_s=30)
    history = serve_loop(ConnectionsPolicy(1000), config, 3, {"a": 5.0, "b": 5.0, "c": 5.0}, 40)
    first_down = next(t for t, n in history if n < 3)
    assert 29.9 <= first_down <= 30.2 and history[-1][1] == 1


def test_serve_wrapper_scales_up_at_once_with_no_upscale_delay(serve_loop):
    config = AutoscalingConfig(min_replicas=1, max_replicas=10, upscale_delay_s=0,
                               downscale_delay_s=600)
    history = serve_loop(ConnectionsPolicy(1000), config, 1, {"a": 2500.0}, 0.2)
    assert history[0] == (0.0, 3)
