"""A single-node Redis for development when no FANDOM_REDIS_URL is given.

Prefers a real ``redis-server`` from PATH (fast, complete); falls back to fakeredis'
pure-Python TCP server (Lua, streams, pub/sub; ~7k XADD/s — a development default,
never a production store). Either way it keeps nothing on disk and binds loopback
only, so it serves one machine: a multi-node cluster needs a real FANDOM_REDIS_URL.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import threading
import time

import redis

from cluster.children import die_with_parent
from cluster.errors import Unavailable


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def wait_for_redis(url: str, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            redis.Redis.from_url(url, socket_connect_timeout=0.5).ping()
            return
        except (redis.ConnectionError, OSError) as e:
            if time.monotonic() > deadline:
                raise Unavailable(f"Redis at {url} did not answer within {timeout_s}s: {e}") from None
            time.sleep(0.05)


class EmbeddedRedis:
    def __init__(self, port: int | None = None):
        self.port = port or free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.kind = ""
        self._proc: subprocess.Popen | None = None
        self._server = None
        self._dir: tempfile.TemporaryDirectory | None = None

    def start(self) -> EmbeddedRedis:
        binary = shutil.which("redis-server")
        if binary:
            self.kind = f"redis-server ({binary})"
            self._dir = tempfile.TemporaryDirectory(prefix="fandom-redis-")
            self._proc = subprocess.Popen(
                [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                 "--appendonly", "no", "--dir", self._dir.name, "--loglevel", "warning"],
                stdout=subprocess.DEVNULL,
                # Its own session: Ctrl-C on `fandom up` reaches the whole foreground
                # process group, and Redis dying first made the shutdown spew
                # connection tracebacks from every actor still using it. We stop it
                # last, in stop(); die_with_parent covers a parent killed outright.
                start_new_session=True, preexec_fn=die_with_parent)
        else:
            from fakeredis import TcpFakeServer

            self.kind = "fakeredis TcpFakeServer (pure Python; development only)"
            self._server = TcpFakeServer(("127.0.0.1", self.port), server_type="redis")
            threading.Thread(target=self._server.serve_forever, daemon=True).start()
        wait_for_redis(self.url)
        return self

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.terminate()
            self._proc.wait(10)
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._dir is not None:
            self._dir.cleanup()
