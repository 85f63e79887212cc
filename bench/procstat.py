"""CPU and memory of the server processes, read from /proc (never from the load generator).

A process is found by walking the tree below this benchmark process (so other
people's Ray clusters on the same machine are never counted) and classified by its
command line: Ray sets ``ray::<ActorClass>`` titles on actor workers.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterable

CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")

# (role, substring of the command line). The first match wins.
RAY_ROLES: list[tuple[str, str]] = [
    ("chat_replica", "ServeReplica:chat:"),
    ("api_replica", "ServeReplica:api:"),
    ("serve_proxy", "ProxyActor"),
    ("serve_controller", "ServeController"),
    ("redis", "redis-server"),
    ("ray_core", "gcs_server"),
    ("ray_core", "raylet"),
    ("ray_core", "dashboard"),
    ("ray_core", "log_monitor"),
    ("ray_core", "monitor.py"),
    ("ray_core", "runtime_env"),
    ("ray_idle_worker", "ray::IDLE"),
]

# What "the chat tier" is for deliveries per server CPU-second: the replicas that hold
# the sockets, the Serve proxy and controller `fandom up` runs beside them, and Redis.
CHAT_TIER = ("chat_replica", "serve_proxy", "serve_controller", "redis")


def _read(path: str) -> str | None:
    try:
        with open(path, "rb") as f:
            return f.read().decode(errors="replace")
    except OSError:
        return None


def parent_map() -> dict[int, int]:
    """pid -> ppid for every live process."""
    out = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        stat = _read(f"/proc/{name}/stat")
        if stat is None:
            continue
        # comm may contain spaces and parentheses: fields start after the last ')'.
        out[int(name)] = int(stat[stat.rfind(")") + 2:].split()[1])
    return out


def descendants(root: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for pid, ppid in parent_map().items():
        children.setdefault(ppid, []).append(pid)
    out, todo = set(), [root]
    while todo:
        for c in children.get(todo.pop(), ()):
            if c not in out:
                out.add(c)
                todo.append(c)
    return out


def cmdline(pid: int) -> str:
    raw = _read(f"/proc/{pid}/cmdline") or ""
    return raw.replace("\0", " ").strip()


def classify(cmd: str, roles: Iterable[tuple[str, str]] = RAY_ROLES) -> str | None:
    for role, needle in roles:
        if needle in cmd:
            return role
    return None


def cpu_seconds(pid: int) -> float | None:
    stat = _read(f"/proc/{pid}/stat")
    if stat is None:
        return None
    fields = stat[stat.rfind(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime + stime


def niceness(pid: int) -> int | None:
    stat = _read(f"/proc/{pid}/stat")
    if stat is None:
        return None
    return int(stat[stat.rfind(")") + 2:].split()[16])  # field 19: nice


def server_niceness(found: dict[int, str], roles: Iterable[str]) -> int:
    """The niceness the server's socket-holding processes run at (0 if none found)."""
    values = [n for pid, role in found.items() if role in roles
              for n in [niceness(pid)] if n is not None]
    return max(values, default=0)


def rss_bytes(pid: int) -> int:
    statm = _read(f"/proc/{pid}/statm")
    return int(statm.split()[1]) * PAGE if statm else 0


def nofile_limit(pid: int) -> int | None:
    for line in (_read(f"/proc/{pid}/limits") or "").splitlines():
        if line.startswith("Max open files"):
            return int(line.split()[3])
    return None


Finder = Callable[[], dict[int, str]]  # pid -> role


def tree_finder(root: int | None = None, extra: Callable[[], dict[int, str]] | None = None) -> Finder:
    """Classify every process below ``root`` (default: this process) by RAY_ROLES."""
    root = os.getpid() if root is None else root

    def find() -> dict[int, str]:
        found = {}
        for pid in descendants(root):
            role = classify(cmdline(pid))
            if role is not None:
                found[pid] = role
        if extra is not None:
            found.update(extra())
        return found

    return find


class CpuMeter:
    """CPU seconds per role over a window, sampling so processes that die still count.

    Processes that appear during the window (a new replica) count from zero; one that
    exits keeps the CPU it had at its last sample (up to ``interval_s`` is missed).
    """

    def __init__(self, finder: Finder, interval_s: float = 0.5):
        self.finder = finder
        self.interval_s = interval_s
        self._start: dict[int, float] = {}
        self._last: dict[int, float] = {}
        self._role: dict[int, str] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def _sample(self, first: bool = False) -> None:
        for pid, role in self.finder().items():
            cpu = cpu_seconds(pid)
            if cpu is None:
                continue
            with self._lock:
                self._role[pid] = role
                if pid not in self._start:
                    self._start[pid] = cpu if first else 0.0
                self._last[pid] = cpu

    def start(self) -> CpuMeter:
        self._sample(first=True)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._sample()

    def stop(self) -> dict[str, float]:
        """CPU seconds per role since start()."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self._sample()
        out: dict[str, float] = {}
        with self._lock:
            for pid, role in self._role.items():
                out[role] = out.get(role, 0.0) + self._last[pid] - self._start[pid]
        return {k: round(v, 3) for k, v in out.items()}


def rss_by_role(found: dict[int, str]) -> dict[str, int]:
    out: dict[str, int] = {}
    for pid, role in found.items():
        out[role] = out.get(role, 0) + rss_bytes(pid)
    return out


NETSTAT_COUNTERS = ("ListenOverflows", "ListenDrops", "TCPSynRetrans", "TCPReqQFullDoCookies")


def tcp_counters() -> dict[str, int]:
    """Machine-wide TcpExt counters that show accept-queue overflow (listen backlog too small)."""
    lines = (_read("/proc/net/netstat") or "").splitlines()
    for head, values in zip(lines[::2], lines[1::2]):
        if head.startswith("TcpExt:"):
            row = dict(zip(head.split()[1:], values.split()[1:]))
            return {k: int(row[k]) for k in NETSTAT_COUNTERS if k in row}
    return {}


def wait_until(cond: Callable[[], bool], timeout_s: float, every_s: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout_s
    while not cond():
        if time.monotonic() > deadline:
            return False
        time.sleep(every_s)
    return True
