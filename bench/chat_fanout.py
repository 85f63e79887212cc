"""Chat fan-out benchmark: fandom's chat tier vs Socket.IO 4.8, same workload, same run.

    python bench/chat_fanout.py --preset ci        # < 5 min on a 2-core box
    python bench/chat_fanout.py --preset 10k --workloads concert

Prints one JSON line per workload with both systems' figures and their ratios
(docs/benchmarks.md explains every field). Workloads: concert (N fans, one room,
R msg/s in total), rooms (N fans in N/100 rooms, 1 msg/s per room), doors (N fans
connect and join within T s while a publisher runs, then one chat replica is
removed and its fans reconnect and recover with `since`).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script: make `bench` and fandom importable
    sys.path.insert(0, str(ROOT))

from bench import procstat  # noqa: E402
from bench.fanout_plan import (  # noqa: E402
    PRESETS, PUB_RATE_MAX, Preset, Workload, final_offsets, plan, publishers_for, ratios,
    room_names, summarize, workers_for, workload_dict,
)
from bench.loadgen import BenchError, Fleet  # noqa: E402
from bench.systems import Fandom, SocketIO, machine, raise_nofile  # noqa: E402
from cluster import tokens  # noqa: E402

BENCH_SECRET = "fandom-bench-secret-0123456789abcdef0123456789"


def mint_tokens(secret: str, prefix: str, n: int) -> list[str]:
    return [tokens.mint(secret, f"{prefix}{i}", ttl_s=6 * 3600) for i in range(n)]


def run_workload(system, w: Workload, *, workers: int, tag: str, fan_tokens: list[str],
                 pub_tokens: list[str], drain_s: float, storm: str | None) -> dict:
    plans = plan(w, workers, tag)
    tier = system.tier_roles
    connect_rate = w.fans / w.connect_within_s if w.connect_within_s else 0.0
    # The generator shares the cores with the server, so it runs at the niceness of the
    # processes holding the sockets: Ray starts workers (our chat replicas) at nice 15,
    # Socket.IO runs at 0. A nice-0 generator against nice-15 replicas gets ~28x their
    # CPU weight and measures its own queueing as the server's latency.
    nice = procstat.server_niceness(system.finder(), ("chat_replica", "socketio"))
    fleet = Fleet(plans, proto=system.proto, url=system.url, tokens=fan_tokens,
                  pub_tokens=pub_tokens, connect_rate=connect_rate, reconnect=w.storm,
                  ack_wait_s=max(15.0, drain_s), nice=nice)
    try:
        rss = lambda: sum(v for k, v in procstat.rss_by_role(system.finder()).items() if k in tier)  # noqa: E731
        rss_before = rss()
        connect_meter = procstat.CpuMeter(system.finder).start()
        tcp_before = procstat.tcp_counters()
        print(f"# {system.name} {w.kind}: connecting {w.fans} fans", file=sys.stderr, flush=True)
        connected = fleet.connect(timeout_s=max(300.0, w.fans / 50))
        connect_cpu = connect_meter.stop()
        tcp_after = procstat.tcp_counters()
        rss_joined = rss()

        meter = procstat.CpuMeter(system.finder).start()
        gen_meter = procstat.CpuMeter(lambda: dict.fromkeys(fleet.pids(), "loadgen")).start()
        t0 = time.monotonic()
        fleet.publish(w.duration_s)
        print(f"# {system.name} {w.kind}: {w.fans} fans joined, publishing for {w.duration_s:g}s",
              file=sys.stderr, flush=True)
        extra: dict = {
            "connect_server_cpu_s": round(sum(v for k, v in connect_cpu.items() if k in tier), 2),
            # Machine-wide (other programs count too): accept-queue overflows while connecting.
            "connect_tcp_counters": {k: tcp_after[k] - tcp_before.get(k, 0) for k in tcp_after},
        }
        if w.storm and storm and hasattr(system, "remove_replica"):
            extra["storm"] = _storm(system, fleet, w, storm)
        published = fleet.published(timeout_s=w.duration_s + 120)
        final = final_offsets(published)
        extra["drain_complete"] = fleet.drain(final, max_s=drain_s)
        window = time.monotonic() - t0
        cpu = meter.stop()
        extra["loadgen_cpu_s"] = gen_meter.stop().get("loadgen")
        extra["loadgen_nice"] = nice
        rss_after = rss()
        reports = fleet.report(final)
    finally:
        fleet.close()
    return summarize(reports=reports, cpu=cpu, tier_roles=tier, rss_before=rss_before,
                     rss_joined=rss_joined, rss_after=None if "storm" in extra else rss_after,
                     connected=connected, published=published,
                     window_s=window, extra=extra)


def _storm(system, fleet: Fleet, w: Workload, how: str) -> dict:
    """Remove a replica a few seconds into publishing; time until every fan is back."""
    time.sleep(min(3.0, w.duration_s / 4))
    total = sum(s["fans"] for s in fleet.stats())
    t_remove = time.monotonic()
    method = system.remove_replica(how)
    low, t_drop, t_back = total, None, None
    deadline = t_remove + max(60.0, w.duration_s * 3)
    while time.monotonic() < deadline:
        stats = fleet.stats()
        joined = sum(s["joined"] for s in stats)
        if joined < total and t_drop is None:
            t_drop = time.monotonic()
        low = min(low, joined)
        if t_drop is not None and joined == total:
            t_back = time.monotonic()
            break
        time.sleep(0.1)
    return {"method": method, "fans_cut": total - low,
            "first_cut_after_s": round(t_drop - t_remove, 2) if t_drop else None,
            "all_back_after_cut_s": round(t_back - t_drop, 2) if t_back and t_drop else None,
            "reconnected": t_back is not None}


def run_system(system, preset: Preset, workloads: list[Workload], workers: int,
               fan_tokens, pub_tokens, storm: str | None) -> dict[str, dict]:
    out = {}
    fresh = isinstance(system, SocketIO)  # Node restarts in a second; Ray does not
    if not fresh:
        system.start()
    try:
        for i, w in enumerate(workloads):
            if fresh:
                system.start()
            try:
                tag = f"{system.name}{int(time.time())}"
                out[w.kind] = run_workload(system, w, workers=workers, tag=tag, fan_tokens=fan_tokens,
                                           pub_tokens=pub_tokens, drain_s=preset.drain_s,
                                           storm=storm if not fresh else None)
                # Memory per connection is only meaningful on servers that held no
                # sockets before: a reused process refills memory freed earlier.
                out[w.kind]["fresh_server"] = fresh or i == 0
            except BenchError as e:
                # A system that cannot finish a workload (e.g. never gets N fans joined)
                # is a result too: report it and go on with the rest of the run.
                out[w.kind] = {"error": str(e).splitlines()[0]}
            finally:
                if fresh:
                    system.stop()
            print(f"# {system.name} {w.kind}: done", file=sys.stderr, flush=True)
    finally:
        if not fresh:
            system.stop()
    return out


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", choices=sorted(PRESETS), default="ci")
    p.add_argument("--workloads", default="concert,rooms,doors", help="comma list")
    p.add_argument("--fans", type=int, help="override N for every workload")
    p.add_argument("--rate", type=float, help="override R (concert: total msg/s; rooms: per room)")
    p.add_argument("--duration", type=float, help="override publishing seconds")
    p.add_argument("--connect-within", type=float, help="doors: override T (connect N fans within T s)")
    p.add_argument("--replicas", type=int, help="chat replicas (default: preset)")
    p.add_argument("--workers", type=int, help="load-generator processes (default: preset)")
    p.add_argument("--tick-ms", type=int, help="FANDOM_TICK_MS for the fandom run")
    p.add_argument("--storm", choices=("redeploy", "kill"), default="redeploy",
                   help="how doors-open removes a replica")
    p.add_argument("--systems", default="fandom,socketio", help="comma list")
    p.add_argument("--drain", type=float, help="override the longest drain wait (s)")
    p.add_argument("--out", help="also append the JSON lines to this file")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    preset = PRESETS[args.preset]
    if args.drain is not None:
        preset = dataclasses.replace(preset, drain_s=args.drain)
    # Ray forwards its workers' log lines to this process's stdout; keep stdout for the
    # JSON lines alone by pointing fd 1 at stderr and writing results to a saved copy.
    out = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    nofile = raise_nofile()
    workloads = []
    for w in preset.workloads:
        if w.kind not in args.workloads.split(","):
            continue
        changes = {k: v for k, v in (("fans", args.fans), ("rate", args.rate),
                                     ("duration_s", args.duration)) if v is not None}
        if args.connect_within is not None and w.kind == "doors":
            changes["connect_within_s"] = args.connect_within
        if args.fans and w.kind == "rooms":
            changes["rooms"] = max(1, args.fans // 100)
        workloads.append(dataclasses.replace(w, **changes))
    replicas = args.replicas or preset.replicas
    biggest = max(w.fans for w in workloads)
    workers = args.workers or max(preset.workers, workers_for(biggest, 2))
    if biggest / replicas > nofile[0] * 0.95 and "fandom" in args.systems:
        print(f"# warning: {biggest} fans over {replicas} replicas exceeds RLIMIT_NOFILE {nofile[0]} "
              "per process; raise --replicas", file=sys.stderr)
    max_pubs = max(len(publishers_for(w, room_names(w, "x"))) for w in workloads)
    fan_tokens = mint_tokens(BENCH_SECRET, "fan", biggest)
    pub_tokens = mint_tokens(BENCH_SECRET, "pub", max_pubs)
    before = machine()
    results: dict[str, dict[str, dict]] = {}
    systems = args.systems.split(",")
    tick_ms = None  # what the fandom stack actually ran with (flag, environment or default)
    if "fandom" in systems:
        env = {"FANDOM_TICK_MS": str(args.tick_ms)} if args.tick_ms else {}
        cpus = max(2, math.ceil(replicas * 0.25)) if replicas * 0.25 > 2 else None
        fandom = Fandom(secret=BENCH_SECRET, replicas=replicas, env=env, num_cpus=cpus)
        results["fandom"] = run_system(fandom, preset, workloads, workers, fan_tokens, pub_tokens,
                                       args.storm)
        tick_ms = getattr(fandom, "settings", None) and fandom.settings.tick_ms
    if "socketio" in systems and preset.anchor:
        results["socketio"] = run_system(SocketIO(secret=BENCH_SECRET), preset, workloads, workers,
                                         fan_tokens, pub_tokens, None)
    after = machine()
    lines = []
    for w in workloads:
        f, s = results.get("fandom", {}).get(w.kind), results.get("socketio", {}).get(w.kind)
        line = {
            "bench": "chat_fanout", "preset": preset.name, "workload": workload_dict(w),
            "setup": {"chat_replicas": replicas, "loadgen_processes": workers,
                      "fandom_tick_ms": tick_ms,
                      "rate_limit": f"server defaults (10/s burst 20 per connection); publishers "
                                    f"spread over connections of <= {PUB_RATE_MAX:g} msg/s",
                      "tier_roles": {"fandom": list(Fandom.tier_roles), "socketio": list(SocketIO.tier_roles)},
                      "note": preset.note or None},
            "machine": {**before, "loadavg_after": after["loadavg"]},
            "fandom": f, "socketio": s,
            "ratios": ratios(f, s) if f and s and "error" not in f and "error" not in s else None,
        }
        lines.append(json.dumps(line, separators=(",", ":")))
    for line in lines:
        print(line, file=out, flush=True)
    if args.out:
        with open(args.out, "a") as fh:
            fh.write("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
