"""Shared fixtures: real Redis, one session-scoped Ray + Serve stack, real clients.

Redis: FANDOM_TEST_REDIS_URL (default redis://127.0.0.1:6379). If nothing answers on
127.0.0.1:6379 we start `redis-server` there (as .ci/run promises) or stop loudly.
Databases: FANDOM_TEST_DB_BASE + 1 for the shared stack, + 2 for component tests
(flushed per test), so parallel checkouts can use different bases.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid

import pytest
import redis

from cluster import tokens
from cluster.embedded_redis import free_port, wait_for_redis
from cluster.settings import Settings

TEST_SECRET = "fandom-test-secret-0123456789abcdef0123456789"
REDIS_BASE = os.environ.get("FANDOM_TEST_REDIS_URL", "redis://127.0.0.1:6379").rstrip("/")
DB_BASE = int(os.environ.get("FANDOM_TEST_DB_BASE", "0"))
STACK_DB = DB_BASE + 1
COMPONENT_DB = DB_BASE + 2


def _ensure_redis() -> None:
    try:
        redis.Redis.from_url(REDIS_BASE, socket_connect_timeout=1).ping()
        return
    except (redis.ConnectionError, OSError):
        pass
    binary = shutil.which("redis-server")
    if REDIS_BASE != "redis://127.0.0.1:6379" or not binary:
        pytest.exit(f"No Redis answers at {REDIS_BASE} and none can be started here "
                    "(need redis-server on PATH). Tests need a real Redis.", returncode=3)
    subprocess.run([binary, "--daemonize", "yes", "--bind", "127.0.0.1", "--port", "6379",
                    "--save", "", "--appendonly", "no"], check=True)
    wait_for_redis(REDIS_BASE)


def pytest_configure(config) -> None:
    _ensure_redis()
    os.environ["FANDOM_JWT_SECRET"] = TEST_SECRET  # inherited by the Ray workers we start


@pytest.fixture
def unique() -> str:
    """A fresh name fragment so tests sharing a Redis never see each other's rooms."""
    return uuid.uuid4().hex[:10]


@pytest.fixture
def component_redis_url() -> str:
    url = f"{REDIS_BASE}/{COMPONENT_DB}"
    redis.Redis.from_url(url).flushdb()
    return url


@pytest.fixture
async def aredis_client(component_redis_url):
    from cluster.redis_conn import async_client

    client = async_client(component_redis_url)
    yield client
    await client.aclose()


class StackInfo:
    def __init__(self, settings: Settings):
        self.settings = settings
        self.http = f"http://127.0.0.1:{settings.http_port}"
        self.ws = f"ws://127.0.0.1:{settings.ws_port}/ws"

    def token(self, user: str, role: str = "fan", rooms: list[str] | None = None, ttl_s: int = 3600) -> str:
        return tokens.mint(self.settings.jwt_secret, user, role=role, rooms=rooms, ttl_s=ttl_s)

    def ws_url(self, user: str, **kw) -> str:
        return f"{self.ws}?token={self.token(user, **kw)}"

    def auth(self, user: str = "ops-1", role: str = "ops") -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(user, role=role)}"}


@pytest.fixture(scope="session")
def stack_settings(tmp_path_factory) -> Settings:
    return Settings.from_env({
        "FANDOM_REDIS_URL": f"{REDIS_BASE}/{STACK_DB}",
        "FANDOM_JWT_SECRET": TEST_SECRET,
        "FANDOM_DATA_DIR": str(tmp_path_factory.mktemp("fandom-data")),
        "FANDOM_HOST": "127.0.0.1",
        "FANDOM_HTTP_PORT": str(free_port()),
        "FANDOM_WS_PORT": str(free_port()),
        "FANDOM_CHAT_REPLICAS": "2",
        "FANDOM_TICK_MS": "20",
        "FANDOM_PRESENCE_INTERVAL_S": "1",
        "FANDOM_DRAIN_TIMEOUT_S": "3",
        # Capacity (issue 5): the applier runs on a rehearsal clock tests move, ticks
        # fast, and a concert's extra chat replicas go soon after its hold ends.
        "FANDOM_CAPACITY_CLOCK": "redis",
        "FANDOM_CAPACITY_TICK_S": "1",
        "FANDOM_CAPACITY_LEAD_S": "600",
        "FANDOM_CAPACITY_HOLD_S": "300",
        "FANDOM_CAPACITY_CPUS_PER_LADDER": "1",
        "FANDOM_CHAT_DOWNSCALE_DELAY_S": "10",
    })


@pytest.fixture(scope="session")
def ray_session(stack_settings):
    """One Ray for the whole session (never per test): a real autoscaler with fake nodes.

    A head with the CPUs tests need, plus chat/transcode worker node types (carrying
    ray-cluster.yaml's custom resources) that Ray's autoscaler launches on demand and
    releases when idle: tests/fake_cluster.py.
    """
    import ray

    from cluster.settings import RAY_NAMESPACE
    from tests.fake_cluster import HEAD_RESOURCES, WORKER_NODE_TYPES, FakeAutoscalingCluster

    redis.Redis.from_url(stack_settings.redis_url).flushdb()
    if ray.is_initialized():
        yield ray
        return
    # Workers inherit the raylets' environment: that is how the JWT secret reaches
    # the replicas without being written into the Serve config (as with `fandom up`).
    os.environ.update(stack_settings.to_env())
    cluster = FakeAutoscalingCluster.start_new(HEAD_RESOURCES, WORKER_NODE_TYPES,
                                               idle_timeout_minutes=0.1,
                                               env=stack_settings.to_env())
    try:
        os.environ.update(cluster.auth_env)
        ray._raylet.Config.initialize("")  # pick up RAY_AUTH_MODE if ray was imported earlier
        ray.init(address=cluster.address, namespace=RAY_NAMESPACE)
        yield ray
    finally:
        from ray import serve

        try:
            if ray.is_initialized():
                serve.shutdown()
        finally:
            ray.shutdown()
            cluster.stop()


@pytest.fixture(scope="session")
def stack(ray_session, stack_settings) -> StackInfo:
    """fandom deployed exactly as `fandom up` deploys it, on free ports."""
    from cluster.up import deploy, start_services

    deploy(stack_settings)
    start_services(stack_settings)
    return StackInfo(stack_settings)
