"""The two systems under test: fandom's chat tier (as `fandom up` starts it) and Socket.IO."""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench import procstat
from bench.loadgen import HERE, BenchError, npm_install
from cluster.embedded_redis import free_port

SOCKETIO_DIR = HERE / "anchors" / "socketio"


def raise_nofile() -> tuple[int, int]:
    """Soft RLIMIT_NOFILE up to the hard limit, before Ray or Node start (they inherit it).

    Raising the hard limit needs CAP_SYS_RESOURCE (or `ulimit -Hn` / limits.conf /
    systemd LimitNOFILE outside); this sandbox has neither, and caps it at 20,000.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else 1 << 20
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (1 << 20, 1 << 20))
        target = 1 << 20
    except (ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)


class Fandom:
    """fandom's chat tier started exactly as `fandom up` starts it (cluster.up.up)."""

    name = "fandom"
    proto = "fandom"
    tier_roles = procstat.CHAT_TIER

    def __init__(self, *, secret: str, replicas: int, env: dict[str, str] | None = None,
                 num_cpus: int | None = None):
        self.secret = secret
        self.replicas = replicas
        self.env = env or {}
        self.num_cpus = num_cpus
        self.stack = None
        self.finder = procstat.tree_finder()

    def start(self) -> Fandom:
        from cluster.settings import Settings
        from cluster.up import up

        self._data = tempfile.TemporaryDirectory(prefix="fandom-bench-")
        settings = Settings.from_env({
            **os.environ,
            "FANDOM_REDIS_URL": "",                 # embedded redis-server, as on a laptop
            "FANDOM_JWT_SECRET": self.secret,
            "FANDOM_DATA_DIR": self._data.name,
            "FANDOM_HOST": "127.0.0.1",
            "FANDOM_HTTP_PORT": str(free_port()),
            "FANDOM_WS_PORT": str(free_port()),
            "FANDOM_CHAT_REPLICAS": str(self.replicas),
            "FANDOM_CHAT_MAX_REPLICAS": str(self.replicas),
            **self.env,
        })
        for attempt in range(3):
            try:
                self.stack = up(settings, num_cpus=self.num_cpus)
                break
            except Exception as e:
                # Ray gives a new node a hard-coded 30 s to register; on a machine
                # shared with other loads that can run out. Retrying is all we can do.
                if "timed out during startup" not in str(e) or attempt == 2:
                    raise
                import ray

                ray.shutdown()
                print(f"# ray did not start ({e}); retrying", file=sys.stderr, flush=True)
        self.settings = self.stack.settings
        return self

    @property
    def url(self) -> str:
        return self.stack.ws_url

    def chat_pids(self) -> list[int]:
        return [p for p, r in self.finder().items() if r == "chat_replica"]

    def remove_replica(self, how: str) -> str:
        """Take one chat replica away; returns how, for the JSON."""
        if how == "kill":
            import ray

            names = [a["name"] for a in ray.util.list_named_actors(all_namespaces=True)
                     if "ChatGateway" in a["name"]]
            ray.kill(ray.get_actor(names[0], namespace="serve"), no_restart=True)
            return "ray.kill of one ChatGateway replica actor (sockets cut; Serve starts a new one)"
        from ray import serve
        from ray.serve.schema import ServeDeploySchema

        from serve.config import CHAT_APP, serve_config

        # Only autoscaling bounds change, so Serve reconfigures in place: one replica is
        # drained (close 1012 to its fans), the others keep their sockets.
        n = self.replicas - 1
        cfg = serve_config(self.settings)
        for app in cfg["applications"]:
            if app["name"] == CHAT_APP:
                a = app["deployments"][0]["autoscaling_config"]
                a["min_replicas"] = a["initial_replicas"] = a["max_replicas"] = n
        serve.context._get_global_client().deploy_apps(ServeDeploySchema.model_validate(cfg))
        return f"declarative re-deploy with chat replicas {self.replicas} -> {n} (in place; drained replica closes 1012)"

    def stop(self) -> None:
        if self.stack is not None:
            self.stack.shutdown()
            self.stack = None


class SocketIO:
    """The anchor: bench/anchors/socketio/server.js on its own port, one Node process."""

    name = "socketio"
    proto = "sio"
    tier_roles = ("socketio",)

    def __init__(self, *, secret: str):
        self.secret = secret
        self.proc: subprocess.Popen | None = None

    def start(self) -> SocketIO:
        npm_install(SOCKETIO_DIR)
        self.port = free_port()
        self.proc = subprocess.Popen(
            ["node", str(SOCKETIO_DIR / "server.js"), str(self.port), self.secret],
            stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        deadline = time.monotonic() + 30
        line = self.proc.stdout.readline()
        if not line.startswith("listening") or time.monotonic() > deadline:
            self.stop()
            raise BenchError(f"Socket.IO anchor did not start: {line!r}")
        return self

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/socket.io/?EIO=4&transport=websocket"

    def finder(self) -> dict[int, str]:
        return {self.proc.pid: "socketio"} if self.proc and self.proc.poll() is None else {}

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


def machine() -> dict:
    def read(path: str) -> str:
        try:
            return Path(path).read_text().strip()
        except OSError:
            return ""

    mem = read("/proc/meminfo").split("\n")[0].split()
    return {
        "cores": os.cpu_count(),
        "mem_gb": round(int(mem[1]) / 2**20, 1) if len(mem) > 1 else None,
        "kernel": os.uname().release,
        "loadavg": read("/proc/loadavg").split()[:3],
        "nofile": list(resource.getrlimit(resource.RLIMIT_NOFILE)),
        "somaxconn": read("/proc/sys/net/core/somaxconn"),
        "tcp_max_syn_backlog": read("/proc/sys/net/ipv4/tcp_max_syn_backlog"),
        "ip_local_port_range": read("/proc/sys/net/ipv4/ip_local_port_range").split(),
    }
