"""`fandom up`: start (or join) Ray, deploy chat + API, print the URLs, run until Ctrl-C."""

from __future__ import annotations

import signal
import sys
import threading

from cluster import tokens
from cluster.settings import Settings


def register(sub) -> None:
    p = sub.add_parser("up", help="start or join a Ray cluster and deploy fandom")
    p.add_argument("--address", help="Ray cluster to join (default: RAY_ADDRESS, else start one)")
    p.add_argument("--redis-url", help="Redis URL (default: FANDOM_REDIS_URL, else embedded)")
    p.add_argument("--http-port", type=int, help="Serve HTTP port (default 8000)")
    p.add_argument("--ws-port", type=int, help="chat WebSocket port (default 8765)")
    p.add_argument("--num-cpus", type=int, help="logical CPUs for a local Ray (default: all)")
    p.add_argument("--exit-when-ready", action="store_true",
                   help="deploy, print the URLs, shut down and exit 0 (smoke check)")
    p.set_defaults(func=run)


def run(args) -> int:
    from cluster.up import up

    settings = Settings.from_env()
    overrides = {"ray_address": args.address, "redis_url": args.redis_url,
                 "http_port": args.http_port, "ws_port": args.ws_port}
    settings = settings.replace(**{k: v for k, v in overrides.items() if v is not None})
    for w in settings.warnings:
        print(f"\n!!! WARNING: {w}\n", file=sys.stderr)
    stack = up(settings, num_cpus=args.num_cpus)
    fan = tokens.mint(stack.settings.jwt_secret, "fan-1", ttl_s=3600)
    print(f"""
fandom is up.
  HTTP API      {stack.http_url}   (OpenAPI docs: {stack.http_url}/docs)
  Chat          {stack.ws_url}?token=<JWT>
  Redis         {stack.settings.redis_url}{"  (embedded)" if stack.redis else ""}
  Try a fan:    python -m websockets "{stack.ws_url}?token={fan}"
                then type: {{"op":"join","room":"lobby"}}
Ctrl-C stops everything.""", flush=True)
    if args.exit_when_ready:
        stack.shutdown()
        return 0
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    while not stop.wait(1.0):  # a timed wait lets the signal handler run promptly
        pass
    print("shutting down...", file=sys.stderr)
    stack.shutdown()
    return 0
