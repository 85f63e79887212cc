"""How every fandom process opens Redis: one place for the pool policy."""

from __future__ import annotations

import redis.asyncio as aredis

# A blocking pool: under a burst (doors open, 10k joins) callers queue for a
# connection instead of failing with "Too many connections" (redis-py's default pool
# raises at 100). 64 in flight per process is far more than one Redis core can use.
POOL_SIZE = 64
POOL_WAIT_S = 10.0


def async_client(url: str, name: str = "fandom") -> aredis.Redis:
    """A client whose connections show up as ``name`` in CLIENT LIST."""
    pool = aredis.BlockingConnectionPool.from_url(
        url, max_connections=POOL_SIZE, timeout=POOL_WAIT_S, health_check_interval=15,
        client_name=name)
    # from_pool: the client owns its pool, so aclose() disconnects the pool's sockets.
    # Redis(connection_pool=pool) leaves them open on aclose(); the tests' clients
    # leaked one connection each that way (ResourceWarnings whenever GC ran).
    return aredis.Redis.from_pool(pool)
