"""Start or join a Ray cluster and deploy fandom onto it (``fandom up``; test sessions).

The CLI layer: it may import everything below it.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

from cluster.embedded_redis import EmbeddedRedis
from cluster.errors import ConfigError
from cluster.settings import RAY_NAMESPACE, Settings
from serve.deploy import deploy

log = logging.getLogger("fandom.up")

REPORTER_INTERVAL_MS = 30_000  # Ray's REPORTER_UPDATE_INTERVAL_MS for a Ray we start
SERVE_LOOP_MONITOR_S = 30.0    # RAY_SERVE_EVENT_LOOP_MONITORING_INTERVAL_S, likewise


@dataclass
class Stack:
    settings: Settings
    redis: EmbeddedRedis | None
    started_ray: bool

    @property
    def http_url(self) -> str:
        return self.settings.public_url or f"http://127.0.0.1:{self.settings.http_port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.settings.ws_port}/ws"

    def shutdown(self) -> None:
        import ray
        from ray import serve

        if self.started_ray:
            try:
                # Our detached services first: the capacity applier, left running while
                # Serve's apps are deleted, reported the half-gone apps as config drift.
                for name in ray.util.list_named_actors():  # this driver's namespace: ours
                    try:
                        ray.kill(ray.get_actor(name), no_restart=True)
                    except ValueError:
                        pass  # gone meanwhile
                serve.shutdown()
            finally:
                ray.shutdown()
        if self.redis is not None:
            self.redis.stop()


def resolve_redis(settings: Settings) -> tuple[Settings, EmbeddedRedis | None]:
    """Settings with a usable redis_url, starting an embedded server if none was given."""
    if settings.redis_url:
        return settings, None
    if settings.ray_address:
        raise ConfigError("joining an existing Ray cluster needs FANDOM_REDIS_URL: an "
                          "embedded Redis on this machine is not reachable from other nodes")
    embedded = EmbeddedRedis().start()
    log.warning("No FANDOM_REDIS_URL: using an EMBEDDED single-node Redis at %s [%s]. "
                "Data lives only as long as this process.", embedded.url, embedded.kind)
    return settings.replace(redis_url=embedded.url), embedded


def start_ray(settings: Settings, num_cpus: int | None = None) -> bool:
    """Connect to RAY_ADDRESS, or start a local Ray; True if we started it."""
    import ray

    if ray.is_initialized():
        return False
    if settings.ray_address:
        ray.init(address=settings.ray_address, namespace=RAY_NAMESPACE)
        return False
    # Local workers inherit this process's environment: that is how secrets reach the
    # replicas without ever being written into the Serve config.
    os.environ.update(settings.to_env())
    # Ray's per-node agent lists /proc/<pid>/fd of every worker each interval (5 s by
    # default): with 8 replicas holding ~90k sockets that was ~30% of a core at nice 0
    # (docs/architecture.md). Its metrics are not worth that on a chat node.
    os.environ.setdefault("REPORTER_UPDATE_INTERVAL_MS", str(REPORTER_INTERVAL_MS))
    # Serve measures each replica's event-loop lag with asyncio.all_tasks() every 5 s:
    # a walk over every task in the process (one per connection in a chat replica),
    # holding the GIL the gateway thread needs.
    os.environ.setdefault("RAY_SERVE_EVENT_LOOP_MONITORING_INTERVAL_S", str(SERVE_LOOP_MONITOR_S))
    # address="local": never silently attach to some other Ray running on this machine.
    ray.init(address="local", namespace=RAY_NAMESPACE, num_cpus=num_cpus, include_dashboard=False)
    return True


# Long-lived actors started after the Serve apps, each as "module:function(settings)".
# Each function must be idempotent (get-or-create a detached named actor).
SERVICES: list[str] = ["jobs.pool:start", "actors.capacity_applier:ensure_applier",
                       "actors.archiver:start_archiver"]


def start_services(settings: Settings) -> None:
    import importlib

    for spec in SERVICES:
        module, _, func = spec.partition(":")
        getattr(importlib.import_module(module), func)(settings)


def up(settings: Settings, *, num_cpus: int | None = None) -> Stack:
    """Everything ``fandom up`` does before it waits for Ctrl-C."""
    settings, embedded = resolve_redis(settings)
    started = False
    try:
        started = start_ray(settings, num_cpus=num_cpus)
        deploy(settings)
        start_services(settings)
    except BaseException:
        Stack(settings, embedded, started).shutdown()
        raise
    return Stack(settings, embedded, started)
