"""Drive the load-generator workers (bench/loadgen/loadgen.c) from Python.

Why C (docs/benchmarks.md, "Choosing the generator"): the generator shares the two
cores with the server it measures, so every core-second it spends is taken from the
server and shows up as the server's latency. The Node `ws` generator it replaced
needed ~1.06 cores at 10,000 fans x 20 msg/s. One client still speaks fandom's
protocol and Socket.IO's engine.io framing, so both systems face an identical client.
The benchmark compiles it with the machine's C compiler on first use.
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

from bench.fanout_plan import LOCAL_ADDRESSES, WorkerPlan, port_slice

HERE = Path(__file__).resolve().parent
LOADGEN_SRC = HERE / "loadgen" / "loadgen.c"
LOADGEN_BIN = HERE / "loadgen" / "build" / "loadgen"


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


def build_loadgen() -> Path:
    """Compile the generator if the binary is missing or older than its source."""
    if LOADGEN_BIN.exists() and LOADGEN_BIN.stat().st_mtime >= LOADGEN_SRC.stat().st_mtime:
        return LOADGEN_BIN
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if not cc:
        raise BenchError("a C compiler is needed for the load generator (Debian: apt-get install gcc)")
    LOADGEN_BIN.parent.mkdir(exist_ok=True)
    tmp = LOADGEN_BIN.with_suffix(f".{os.getpid()}")
    cmd = [cc, "-O2", "-Wall", "-o", str(tmp), str(LOADGEN_SRC), "-lm"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    if r.returncode != 0:
        raise BenchError(f"`{' '.join(cmd)}` failed:\n{r.stdout}{r.stderr}")
    os.replace(tmp, LOADGEN_BIN)  # atomic: a concurrent run never executes half a binary
    return LOADGEN_BIN


def worker_config(*, index: int, proto: str, url: str, plan: WorkerPlan, tokens: list[str],
                  publishers: list[tuple[str, list[str], float, float]], workers: int,
                  connect_rate: float, reconnect: bool, text_bytes: int, ack_wait_s: float,
                  concurrency: int = 200) -> str:
    """One worker's config file: a ``key value`` line per setting, then its fans
    (``fan TOKEN ROOM``) and publishers (``pub RATE PHASE_S TOKEN ROOM...``)."""
    u = urlsplit(url)
    path = (u.path or "/") + ("?" + u.query + "&" if u.query else "?") + "token="
    settings = {"proto": proto, "host": u.hostname, "port": u.port, "path": path, "worker": index,
                "reconnect": int(reconnect), "connect_rate": connect_rate, "text_bytes": text_bytes,
                "ack_wait_ms": ack_wait_s * 1000, "concurrency": concurrency,
                **port_slice(index, workers)}
    lines = [f"{k} {v}" for k, v in settings.items()]
    lines += [f"addr {a}" for a in LOCAL_ADDRESSES]
    lines += [f"fan {tokens[i]} {room}" for i, room in plan.fans]
    lines += [f"pub {rate} {phase} {token} {' '.join(rooms)}" for token, rooms, rate, phase in publishers]
    return "\n".join(lines) + "\n"


def _final_args(final: dict[str, int] | None) -> str:
    return " ".join(f"{room}={off}" for room, off in (final or {}).items())


class Worker:
    """One generator process; text commands in on stdin, JSON events out on stdout."""

    def __init__(self, index: int, binary: Path, config: str, nice: int = 0):
        self.index = index
        self._dir = tempfile.TemporaryDirectory(prefix="fandom-loadgen-")
        path = Path(self._dir.name) / "config"
        path.write_text(config)
        self.proc = subprocess.Popen(
            [str(binary), str(path)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True, bufsize=1, preexec_fn=(lambda: os.nice(nice)) if nice else None)
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

    def send(self, cmd: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(cmd + "\n")
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
            raise BenchError(f"worker {self.index} exited ({e['rc']}) waiting for {ev!r}:\n"
                             + "".join(self.stderr[-20:]))

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.send("exit")
                self.proc.wait(10)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()
        self._dir.cleanup()


class Fleet:
    """The generator: several workers, one plan each, driven through the phases together."""

    def __init__(self, plans: list[WorkerPlan], *, proto: str, url: str, tokens: list[str],
                 pub_tokens: list[str], connect_rate: float = 0.0, reconnect: bool = False,
                 text_bytes: int = 64, ack_wait_s: float = 15.0, nice: int = 0):
        binary = build_loadgen()
        self.workers: list[Worker] = []
        pub_i = 0
        try:
            for i, p in enumerate(plans):
                pubs = []
                for pp in p.publishers:
                    pubs.append((pub_tokens[pub_i], pp.rooms, pp.rate, pp.phase_s))
                    pub_i += 1
                config = worker_config(index=i, proto=proto, url=url, plan=p, tokens=tokens,
                                       publishers=pubs, workers=len(plans),
                                       connect_rate=connect_rate / len(plans), reconnect=reconnect,
                                       text_bytes=text_bytes, ack_wait_s=ack_wait_s)
                self.workers.append(Worker(i, binary, config, nice=nice))
            for w in self.workers:
                w.wait("ready", 60)
        except BaseException:
            self.close()
            raise

    def pids(self) -> list[int]:
        return [w.proc.pid for w in self.workers]

    def connect(self, timeout_s: float) -> list[dict]:
        for w in self.workers:
            w.send("connect")
        return [w.wait("connected", timeout_s) for w in self.workers]

    def publish(self, duration_s: float) -> None:
        for w in self.workers:
            w.send(f"publish {duration_s}")

    def published(self, timeout_s: float) -> list[dict]:
        return [w.wait("published", timeout_s) for w in self.workers]

    def stats(self, final: dict[str, int] | None = None) -> list[dict]:
        for w in self.workers:
            w.send(f"stats {_final_args(final)}")
        return [w.wait("stats", 30) for w in self.workers]

    def report(self, final: dict[str, int]) -> list[dict]:
        for w in self.workers:
            w.send(f"report {_final_args(final)}")
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
