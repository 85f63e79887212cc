"""Drive the Node load-generator workers (bench/loadgen/loadgen.js) from Python.

Why Node: measured side by side (docs/benchmarks.md, "Choosing the generator"), a
Node `ws` client and a Python websockets+uvloop client cost about the same per frame
received (~40 us, loaded machine) and per connection (~25-30 KB marginal), so cost
did not decide it. What did: one client speaks both fandom's protocol and Socket.IO's
engine.io framing over the same `ws` code, so both systems face an identical client,
and it is the client the Socket.IO figures in FACTS.md were measured with.
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import subprocess
import threading
import time
from pathlib import Path

from bench.fanout_plan import LOCAL_ADDRESSES, WorkerPlan, port_slice

HERE = Path(__file__).resolve().parent
LOADGEN_DIR = HERE / "loadgen"


class BenchError(RuntimeError):
    pass


def npm_install(directory: Path) -> None:
    """Install a Node package's locked dependencies into its node_modules (idempotent)."""
    if not shutil.which("node") or not shutil.which("npm"):
        raise BenchError("node and npm are needed (Debian: apt-get install nodejs npm)")
    stamp = directory / "node_modules" / ".package-lock.json"
    lock = directory / "package-lock.json"
    if stamp.exists() and stamp.stat().st_mtime >= lock.stat().st_mtime:
        return
    cmd = ["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"]
    r = subprocess.run(cmd, cwd=directory, capture_output=True, text=True, timeout=600)
    if r.returncode != 0:
        raise BenchError(f"`{' '.join(cmd)}` in {directory} failed:\n{r.stdout}{r.stderr}")


class Worker:
    """One Node worker process; commands in on stdin, events out on stdout."""

    def __init__(self, index: int, env: dict[str, str] | None = None, nice: int = 0):
        self.index = index
        self.proc = subprocess.Popen(
            # FANDOM_BENCH_NODE_ARGS="--cpu-prof --cpu-prof-dir=DIR" profiles the generator.
            ["node", "--max-old-space-size=4096", *os.environ.get("FANDOM_BENCH_NODE_ARGS", "").split(),
             str(LOADGEN_DIR / "loadgen.js")],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True, bufsize=1, env={**os.environ, **(env or {})},
            preexec_fn=(lambda: os.nice(nice)) if nice else None)
        self.events: queue.Queue[dict] = queue.Queue()
        self.stderr: list[str] = []
        self._stash: dict[str, list[dict]] = {}
        threading.Thread(target=self._read, daemon=True).start()
        threading.Thread(target=self._read_err, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if line.strip():
                self.events.put(json.loads(line))
        self.events.put({"ev": "exited", "rc": self.proc.wait()})

    def _read_err(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.stderr.append(line)
            del self.stderr[:-50]

    def send(self, cmd: dict) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(cmd) + "\n")
        self.proc.stdin.flush()

    def wait(self, ev: str, timeout_s: float) -> dict:
        # Events of other kinds that arrive meanwhile (a "published" while we poll
        # "stats") are kept for their own wait, never dropped.
        if self._stash.get(ev):
            return self._stash[ev].pop(0)
        deadline = time.monotonic() + timeout_s
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise BenchError(f"worker {self.index}: no {ev!r} within {timeout_s}s")
            try:
                e = self.events.get(timeout=left)
            except queue.Empty:
                continue
            if e["ev"] == ev:
                return e
            if e["ev"] != "exited":
                self._stash.setdefault(e["ev"], []).append(e)
                continue
            if e["ev"] == "exited":
                raise BenchError(f"worker {self.index} exited ({e['rc']}) waiting for {ev!r}:\n"
                                 + "".join(self.stderr[-20:]))

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.send({"cmd": "exit"})
                self.proc.wait(10)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()


class Fleet:
    """The generator: several workers, one plan each, driven through the phases together."""

    def __init__(self, plans: list[WorkerPlan], *, proto: str, url: str, tokens: list[str],
                 pub_tokens: list[str], connect_rate: float = 0.0, reconnect: bool = False,
                 text_bytes: int = 64, ack_wait_s: float = 15.0, nice: int = 0):
        npm_install(LOADGEN_DIR)
        self.workers = [Worker(i, nice=nice) for i in range(len(plans))]
        pub_i = 0
        try:
            for w, p in zip(self.workers, plans):
                pubs = []
                for pp in p.publishers:
                    pubs.append({"token": pub_tokens[pub_i], "rooms": pp.rooms, "rate": pp.rate})
                    pub_i += 1
                w.send({"cmd": "init", "proto": proto, "url": url, "worker": w.index,
                        "fans": [[tokens[i], room] for i, room in p.fans], "publishers": pubs,
                        "local_addresses": LOCAL_ADDRESSES, "reconnect": reconnect,
                        **port_slice(w.index, len(plans)),
                        "connect_rate": connect_rate / len(plans), "text_bytes": text_bytes,
                        "concurrency": 200, "ack_wait_ms": ack_wait_s * 1000})
            for w in self.workers:
                w.wait("ready", 60)
        except BaseException:
            self.close()
            raise

    def pids(self) -> list[int]:
        return [w.proc.pid for w in self.workers]

    def connect(self, timeout_s: float) -> list[dict]:
        for w in self.workers:
            w.send({"cmd": "connect"})
        return [w.wait("connected", timeout_s) for w in self.workers]

    def publish(self, duration_s: float) -> None:
        for w in self.workers:
            w.send({"cmd": "publish", "duration_s": duration_s})

    def published(self, timeout_s: float) -> list[dict]:
        return [w.wait("published", timeout_s) for w in self.workers]

    def stats(self, final: dict[str, int] | None = None) -> list[dict]:
        for w in self.workers:
            w.send({"cmd": "stats", "final": final})
        return [w.wait("stats", 30) for w in self.workers]

    def report(self, final: dict[str, int]) -> list[dict]:
        for w in self.workers:
            w.send({"cmd": "report", "final": final})
        return [w.wait("report", 120) for w in self.workers]

    def drain(self, final: dict[str, int], max_s: float, quiet_s: float = 5.0) -> bool:
        """Until every fan has every message up to ``final`` (True), or nothing arrived
        for quiet_s or max_s passed (False: what is still missing is reported as lost)."""
        deadline = time.monotonic() + max_s
        last, since = -1, time.monotonic()
        while time.monotonic() < deadline:
            stats = self.stats(final)
            frames = sum(s["frames"] for s in stats)
            if sum(s["missing"] for s in stats) == 0:
                return True
            if frames != last:
                last, since = frames, time.monotonic()
            elif time.monotonic() - since >= quiet_s:
                return False
            time.sleep(0.2)
        return False

    def close(self) -> None:
        for w in self.workers:
            w.close()
