"""Pure parts of the chat fan-out benchmark: presets, workload plans, result maths.

No processes, no sockets, no clock: bench/chat_fanout.py runs what these describe.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

# Loopback source addresses the generator spreads its sockets over: each address has
# its own ~28k ephemeral ports (net.ipv4.ip_local_port_range), so 8 of them give
# room for ~225k client sockets on one machine.
LOCAL_ADDRESSES = [f"127.0.0.{i}" for i in range(2, 10)]
# Source ports the generator binds itself (bench/loadgen/loadgen.js says why); above
# Ray's worker port range (10002-19999), each worker a disjoint slice on every address.
SOURCE_PORTS = (20_000, 65_000)

# A publisher connection stays at half fandom's default per-connection rate limit
# (FANDOM_RATE_PER_S=10, burst 20), so the benchmark runs with default settings and
# spreads load over more publisher connections instead of raising the limit.
PUB_RATE_MAX = 5.0
ROOMS_PER_PUBLISHER = 5   # many-rooms workload: 1 msg/s per room -> 5 msg/s per publisher
FANS_PER_WORKER = 15_000  # under the 20,000 RLIMIT_NOFILE hard limit of this sandbox


@dataclass(frozen=True)
class Workload:
    kind: str            # "concert" | "rooms" | "doors"
    fans: int
    rooms: int
    rate: float          # messages per second in total (concert/doors) or per room (rooms)
    duration_s: float    # publishing time (for doors: the storm phase)
    connect_within_s: float = 0.0  # doors: pace N connects over this many seconds (0 = flat out)
    storm: bool = False  # doors: remove a replica mid-run and let fans reconnect + recover


@dataclass(frozen=True)
class Preset:
    name: str
    replicas: int
    workers: int
    workloads: tuple[Workload, ...]
    drain_s: float = 10.0  # longest wait for the last deliveries after publishing stops
    anchor: bool = True
    note: str = ""


def _trio(n: int, concert_rate: float, duration_s: float, doors_s: float) -> tuple[Workload, ...]:
    return (
        Workload("concert", n, 1, concert_rate, duration_s),
        Workload("rooms", n, max(1, n // 100), 1.0, duration_s),
        Workload("doors", n, 1, 5.0, max(duration_s, 20.0), connect_within_s=doors_s, storm=True),
    )


def workers_for(fans: int, cores: int) -> int:
    return max(cores, math.ceil(fans / FANS_PER_WORKER))


PRESETS: dict[str, Preset] = {
    "ci": Preset("ci", replicas=2, workers=2, workloads=(
        Workload("concert", 500, 1, 20.0, 8.0),
        Workload("rooms", 500, 5, 1.0, 8.0),
        Workload("doors", 500, 1, 5.0, 15.0, connect_within_s=5.0, storm=True),
    )),
    "1k": Preset("1k", replicas=2, workers=2, workloads=_trio(1_000, 20.0, 30.0, 10.0)),
    "10k": Preset("10k", replicas=2, workers=2, drain_s=30.0, workloads=_trio(10_000, 20.0, 30.0, 10.0)),
    # 100k sockets: the 20,000 fd hard limit per process (no CAP_SYS_RESOURCE here)
    # forces >= 6 server processes and >= 7 generator processes. One Socket.IO
    # process cannot hold 100k sockets under that limit, so the anchor is skipped.
    "100k": Preset("100k", replicas=8, workers=8, anchor=False, drain_s=30.0, workloads=(
        # A broadcast every 5 s: 100k sockets held, each receiving every broadcast. At
        # 1 msg/s (one frame per message, 100k writes/s) this box saturates with the
        # generator on it (docs/benchmarks.md has that run too: --rate 1).
        Workload("concert", 100_000, 1, 0.2, 30.0),
        Workload("rooms", 100_000, 1_000, 1.0, 30.0),
        Workload("doors", 100_000, 1, 1.0, 40.0, connect_within_s=60.0, storm=True),
    ), note="Socket.IO anchor skipped: one Node process is capped at 20,000 sockets here"),
}


@dataclass
class PubPlan:
    rooms: list[str]
    rate: float          # messages per second over all its rooms
    phase_s: float = 0.0  # when its first message is due after publishing starts


@dataclass
class WorkerPlan:
    fans: list[tuple[int, str]] = field(default_factory=list)   # (fan index, room)
    publishers: list[PubPlan] = field(default_factory=list)


def room_names(w: Workload, tag: str) -> list[str]:
    return [f"{w.kind}-{tag}-{i}" for i in range(w.rooms)]


def publishers_for(w: Workload, rooms: list[str]) -> list[PubPlan]:
    """Publisher connections for a workload, each under PUB_RATE_MAX msg/s."""
    if w.kind == "rooms":
        per = max(1, min(ROOMS_PER_PUBLISHER, int(PUB_RATE_MAX // max(w.rate, 1e-9)) or 1))
        return [PubPlan(rooms[i:i + per], w.rate * len(rooms[i:i + per]))
                for i in range(0, len(rooms), per)]
    # Publishers sharing a room are evenly out of phase, so the room receives R msg/s
    # as a steady stream. In phase (as before 2026-12-05) four 5 msg/s publishers sent
    # bursts of 4 messages 5 times a second, which flatters batching servers: ~3.7
    # messages per frame instead of ~1 (docs/benchmarks.md, "Publishers").
    count = max(1, math.ceil(w.rate / PUB_RATE_MAX))
    return [PubPlan([rooms[0]], w.rate / count, phase_s=j / w.rate) for j in range(count)]


def plan(w: Workload, workers: int, tag: str) -> list[WorkerPlan]:
    """Fans round-robin over rooms and workers; publishers round-robin over workers."""
    rooms = room_names(w, tag)
    out = [WorkerPlan() for _ in range(workers)]
    for i in range(w.fans):
        out[i % workers].fans.append((i, rooms[i % len(rooms)]))
    for j, p in enumerate(publishers_for(w, rooms)):
        out[j % workers].publishers.append(p)
    return out


# --- result maths --------------------------------------------------------------------

def merge_hist(sparse_hists: list[list[list[int]]]) -> dict[int, int]:
    out: dict[int, int] = {}
    for h in sparse_hists:
        for bucket, count in h:
            out[bucket] = out.get(bucket, 0) + count
    return out


def percentile(hist: dict[int, int], q: float, bucket_ms: float) -> float | None:
    """The q-quantile (0..1) of a bucketed histogram, as the bucket's upper edge in ms."""
    total = sum(hist.values())
    if total == 0:
        return None
    rank = max(1, math.ceil(q * total))
    seen = 0
    for bucket in sorted(hist):
        seen += hist[bucket]
        if seen >= rank:
            return round((bucket + 1) * bucket_ms, 1)
    return None  # unreachable


def ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b == 0:
        return None
    return round(a / b, 2)


def summarize(*, reports: list[dict], cpu: dict[str, float], tier_roles: tuple[str, ...],
              rss_before: int, rss_joined: int, rss_after: int | None, connected: list[dict],
              published: list[dict], window_s: float, extra: dict | None = None) -> dict:
    """One system's figures for one workload, from the workers' reports.

    Memory per connection is RSS growth of the server processes from before the first
    connect to when every fan has joined (``rss_after``, after the traffic, is None
    when processes came and went during the run, as in the reconnect storm).
    """
    held = sum(r["joined"] for r in reports)
    deliveries = sum(r["received"] for r in reports)
    hist = merge_hist([r["hist"] for r in reports])
    bucket = reports[0]["bucket_ms"] if reports else 0.1
    tier_cpu = sum(v for k, v in cpu.items() if k in tier_roles)
    t0 = min((c["t0"] for c in connected), default=0.0)
    t1 = max((c["t1"] for c in connected), default=0.0)
    ok = sum(c["ok"] for c in connected)
    out = {
        "connections_held": held,
        "connect_s": round((t1 - t0) / 1000, 2),
        "connect_rate_per_s": round(ok / ((t1 - t0) / 1000), 1) if t1 > t0 else None,
        "failed_handshakes": sum(c["failed_handshakes"] for c in connected),
        "never_connected": sum(c["failed"] for c in connected),
        "messages_sent": sum(p["sent"] for p in published),
        "messages_acked": sum(p["acked"] for p in published),
        "unacked": sum(p["unacked"] for p in published),
        "deliveries": deliveries,
        "window_s": round(window_s, 2),
        "deliveries_per_s": round(deliveries / window_s, 1) if window_s else None,
        "server_cpu_s": round(tier_cpu, 2),
        "deliveries_per_server_cpu_s": round(deliveries / tier_cpu) if tier_cpu else None,
        "cpu_by_role_s": cpu,
        "latency_ms": {"p50": percentile(hist, 0.50, bucket), "p90": percentile(hist, 0.90, bucket),
                       "p99": percentile(hist, 0.99, bucket), "p999": percentile(hist, 0.999, bucket),
                       "max": round(max((r["latency_max_ms"] for r in reports), default=0.0), 1),
                       "samples": sum(hist.values())},
        "server_rss_joined_mb": round(rss_joined / 2**20, 1),
        "server_bytes_per_connection": round((rss_joined - rss_before) / held) if held else None,
        "server_bytes_per_connection_after_run": (
            round((rss_after - rss_before) / held) if held and rss_after is not None else None),
        "expected": sum(r["expected"] for r in reports),
        "lost": sum(r["lost"] for r in reports),
        "duplicated": sum(r["duplicated"] for r in reports),
        "out_of_order": sum(r["out_of_order"] for r in reports),
        "recovered": sum(r["recovered"] for r in reports),
        "reconnects": sum(r["reconnects"] for r in reports),
        # Every frame the fans and publishers received, connect phase included, and
        # how many of those were presence updates (fandom only).
        "frames": sum(r["frames"] for r in reports),
        "presence_frames": sum(r.get("presence_frames", 0) for r in reports),
        "errors": _sum_maps([r["errors"] for r in reports]),
        "closes": _sum_maps([r["closes"] for r in reports]),
    }
    if extra:
        out.update(extra)
    return out


def _sum_maps(maps: list[dict[str, int]]) -> dict[str, int]:
    out: dict[str, int] = {}
    for m in maps:
        for k, v in m.items():
            out[k] = out.get(k, 0) + v
    return out


def final_offsets(published: list[dict]) -> dict[str, int]:
    """Highest acknowledged offset per room over every worker."""
    out: dict[str, int] = {}
    for p in published:
        for room, off in p["rooms"].items():
            out[room] = max(out.get(room, 0), off)
    return out


def ratios(fandom: dict, anchor: dict | None) -> dict | None:
    if anchor is None:
        return None
    return {
        "deliveries_per_server_cpu_s": ratio(fandom["deliveries_per_server_cpu_s"],
                                             anchor["deliveries_per_server_cpu_s"]),
        "p99_latency": ratio(fandom["latency_ms"]["p99"], anchor["latency_ms"]["p99"]),
        "bytes_per_connection": ratio(fandom["server_bytes_per_connection"],
                                      anchor["server_bytes_per_connection"]),
        "connect_rate": ratio(fandom["connect_rate_per_s"], anchor["connect_rate_per_s"]),
    }


def workload_dict(w: Workload) -> dict:
    return asdict(w)


def port_slice(worker: int, workers: int) -> dict[str, int]:
    """The source ports [port_lo, port_hi) worker ``worker`` of ``workers`` binds."""
    lo, hi = SOURCE_PORTS
    span = (hi - lo) // workers
    return {"port_lo": lo + worker * span, "port_hi": lo + (worker + 1) * span}
