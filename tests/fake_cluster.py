"""A real autoscaling Ray cluster on one machine (Ray's ``fake_multinode`` provider).

The test session runs on this: a head started with ``ray start --head --block
--autoscaling-config`` and the real (v1) autoscaler, which launches "worker nodes"
as local raylet processes when demand or ``request_resources`` asks for them and
terminates them when idle. Worker node types carry the same custom resources as
ray-cluster.yaml, so the capacity planner's bundles land on the right type here too.

Everything is private to this process: its own temp dir, GCS and agent ports, Ray auth token
(other people run Ray on this machine, so ``ray stop`` is never used). Teardown
terminates the ``ray start`` process we started and every process whose command line
names our private temp dir or session (the fake worker nodes' raylets).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from cluster.embedded_redis import free_port

HEAD_TYPE = "ray.head.default"  # the fake provider names the head node type so

# The test session's cluster. Worker types carry ray-cluster.yaml's custom resources,
# but only 1 CPU each, so the nodes a capacity test brings up cost this machine little.
HEAD_RESOURCES = {"CPU": 8}
WORKER_NODE_TYPES = {
    "chat": {"resources": {"CPU": 1, "fandom_chat": 4}, "max_workers": 2},
    "transcode": {"resources": {"CPU": 1, "fandom_transcode": 1}, "max_workers": 1},
}


def fake_config(head_resources: dict, worker_types: dict, *, gcs_address: str,
                idle_timeout_minutes: float) -> dict:
    """A cluster-launcher config for the fake_multinode provider (FACTS.md)."""
    types = {HEAD_TYPE: {"resources": head_resources, "node_config": {},
                         "min_workers": 0, "max_workers": 0}}
    for name, t in worker_types.items():
        types[name] = {"resources": t["resources"], "node_config": {},
                       "min_workers": t.get("min_workers", 0), "max_workers": t["max_workers"]}
    return {
        "cluster_name": "fandom-test",
        "max_workers": sum(t["max_workers"] for t in worker_types.values()),
        "upscaling_speed": 100,
        "idle_timeout_minutes": idle_timeout_minutes,
        "provider": {"type": "fake_multinode", "use_node_id_as_ip": True,
                     "disable_node_updaters": True, "disable_launch_config_check": True,
                     # Default is <node ip>:6379, where this machine's Redis lives.
                     "gcs_address": gcs_address},
        "auth": {"ssh_user": "ubuntu"},
        "head_node_type": HEAD_TYPE,
        "available_node_types": types,
        "docker": {}, "file_mounts": {}, "cluster_synced_files": [],
        "file_mounts_sync_continuously": False, "rsync_exclude": [], "rsync_filter": [],
        "initialization_commands": [], "setup_commands": [], "head_setup_commands": [],
        "worker_setup_commands": [], "head_start_ray_commands": [],
        "worker_start_ray_commands": [],
    }


class FakeAutoscalingCluster:
    def __init__(self, head_resources: dict, worker_types: dict, *,
                 idle_timeout_minutes: float = 0.1, env: dict[str, str] | None = None):
        self.head_resources = dict(head_resources)
        self.worker_types = worker_types
        self.idle_timeout_minutes = idle_timeout_minutes
        self.env = env or {}
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        # Short path: Ray puts unix sockets under it (108-byte limit).
        self.temp_dir = tempfile.mkdtemp(prefix="fdr-", dir="/tmp")
        self._proc: subprocess.Popen | None = None
        # Token auth as in production, with a token of our own rather than ~/.ray's.
        token_path = Path(self.temp_dir) / "auth_token"
        token_path.write_text(secrets.token_hex(32))
        token_path.chmod(0o600)
        self.auth_env = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token_path)}

    @classmethod
    def start_new(cls, *args, attempts: int = 2, **kw) -> FakeAutoscalingCluster:
        """Start one, retrying once: on a loaded machine a raylet can miss its agents' deadline."""
        for attempt in range(attempts):
            cluster = cls(*args, **kw)
            try:
                return cluster.start()
            except RuntimeError:
                cluster.stop()
                if attempt == attempts - 1:
                    raise
        raise AssertionError("unreachable")

    def start(self, timeout_s: float = 90.0) -> FakeAutoscalingCluster:
        resources = dict(self.head_resources)
        num_cpus = resources.pop("CPU", 0)
        config = fake_config(resources | {"CPU": num_cpus}, self.worker_types,
                             gcs_address=self.address,
                             idle_timeout_minutes=self.idle_timeout_minutes)
        config_path = Path(self.temp_dir) / "autoscaling.json"
        config_path.write_text(json.dumps(config))
        ray_bin = str(Path(sys.executable).with_name("ray"))
        cmd = [ray_bin, "start", "--head", "--block",
               f"--autoscaling-config={config_path}",
               "--node-ip-address=127.0.0.1", f"--port={self.port}",
               f"--temp-dir={self.temp_dir}", f"--num-cpus={num_cpus}",
               f"--ray-client-server-port={free_port()}",
               f"--dashboard-agent-listen-port={free_port()}",
               f"--dashboard-agent-grpc-port={free_port()}",
               f"--runtime-env-agent-port={free_port()}",
               f"--metrics-export-port={free_port()}",
               "--include-dashboard=false", "--disable-usage-stats"]
        if resources:
            cmd.append(f"--resources={json.dumps(resources)}")
        env = {**os.environ, **self.env, **self.auth_env, "AUTOSCALER_UPDATE_INTERVAL_S": "1",
               "RAY_FAKE_CLUSTER": "1",
               # Agents start slowly when the machine is busy; the default deadline
               # then kills the raylet at startup.
               "RAY_agent_register_timeout_ms": "120000",
               # Teardown: no 30 s SIGTERM drain (that is for rolling pod upgrades).
               "RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S": "0"}
        log = open(Path(self.temp_dir) / "ray-start.log", "wb")
        # Own process group: teardown can signal the head and its children as one.
        self._proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT,
                                      start_new_session=True)
        self._wait_ready(timeout_s)
        return self

    def _wait_ready(self, timeout_s: float) -> None:
        # `ray start --block` prints this once GCS, raylet and the autoscaler run.
        log = Path(self.temp_dir) / "ray-start.log"
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            text = log.read_text(errors="replace") if log.exists() else ""
            if self._proc.poll() is not None:
                raise RuntimeError(f"ray start exited {self._proc.returncode}: {text[-3000:]}")
            if "Ray runtime started" in text:
                return
            time.sleep(0.2)
        raise RuntimeError(f"fake cluster at {self.address} not ready after {timeout_s}s")

    def stop(self) -> None:
        """Terminate what we started: the head group, then fake workers under our temp dir."""
        if self._proc is not None and self._proc.poll() is None:
            os.killpg(self._proc.pid, signal.SIGTERM)
            try:
                self._proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self._proc.pid, signal.SIGKILL)
        for pid in self._our_pids():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.remove_temp_dir()

    def _our_pids(self) -> list[int]:
        pids = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or int(entry.name) == os.getpid():
                continue
            try:
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if self.temp_dir in cmdline:
                pids.append(int(entry.name))
        return pids

    def remove_temp_dir(self) -> None:
        shutil.rmtree(self.temp_dir, ignore_errors=True)
