"""The chat tier as a Ray Serve deployment: Serve runs the replicas, we run the sockets.

Each replica hosts a ``Gateway`` (serve/ws_gateway.py). Serve gives us placement,
restarts on failed health checks, autoscaling on the ``connections`` metric
(serve/autoscaling.py) and, on scale-down or redeploy, a call to ``__del__`` in which
the replica tells every fan to reconnect (close 1012) before it goes.
"""

from __future__ import annotations

import logging
import os

from ray import serve

from cluster.settings import Settings
from serve.autoscaling import CONNECTIONS_METRIC
from serve.ws_gateway import Gateway

log = logging.getLogger("fandom.chat")


@serve.deployment(name="ChatGateway")
class ChatGateway:
    def __init__(self, env: dict[str, str] | None = None):
        settings = Settings.from_env({**os.environ, **(env or {})})
        ctx = serve.get_replica_context()
        self.gateway = Gateway(settings, replica_id=ctx.replica_id.unique_id)
        self.gateway.start()

    # These are `async def` although nothing in them waits: Serve runs a plain `def`
    # through anyio's thread pool, and anyio looks for its root task with
    # asyncio.all_tasks() — which walks every task of the process, our ~12,000
    # connection handlers included, on each health check and metrics poll (profile
    # in docs/architecture.md). As coroutines they run directly on Serve's loop.
    async def check_health(self) -> None:
        self.gateway.check()

    async def record_autoscaling_stats(self) -> dict[str, float]:
        return {CONNECTIONS_METRIC: float(self.gateway.connections)}

    def __del__(self) -> None:
        self.gateway.stop()
