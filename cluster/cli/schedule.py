"""`fandom schedule`: the concert calendar (add, list, update, remove) in Redis."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime

from cluster import calendar
from cluster.capacity import CapacityModel, phase
from cluster.capacity_store import CapacityStore
from cluster.errors import ConfigError
from cluster.redis_conn import async_client
from cluster.settings import Settings


def register(sub) -> None:
    p = sub.add_parser("schedule", help="concert calendar: add, list, update, remove concerts")
    ops = p.add_subparsers(dest="op", required=True, metavar="OP")
    add = ops.add_parser("add", help="add a concert")
    _concert_flags(add, required=True)
    add.add_argument("--id", help="concert id (default: generated)")
    ls = ops.add_parser("list", help="list concerts (upcoming and running; --all for past ones)")
    ls.add_argument("--all", action="store_true", help="include concerts whose capacity is over")
    ls.add_argument("--json", action="store_true", help="JSON output")
    up = ops.add_parser("update", help="change fields of a concert")
    up.add_argument("id")
    _concert_flags(up, required=False)
    rm = ops.add_parser("remove", help="remove a concert (its capacity goes at the next tick)")
    rm.add_argument("id")
    p.set_defaults(func=run)


def _concert_flags(p, *, required: bool) -> None:
    p.add_argument("--title", required=required)
    p.add_argument("--starts", required=required,
                   help="ISO 8601, e.g. 2026-07-01T20:00:00+02:00 (or local time with --tz)")
    p.add_argument("--ends", required=required, help="ISO 8601 end time")
    p.add_argument("--tz", help="IANA zone, e.g. Europe/Berlin: times without an offset are "
                   "local to it, and it is shown in listings")
    p.add_argument("--audience", type=int, required=required, help="expected fans (> 0)")
    p.add_argument("--region", help="region, e.g. eu-west-1 (optional)")
    p.add_argument("--ladders", type=int, help="live transcoding ladders it needs (default 0)")


def _fields(args) -> dict:
    pairs = {"title": args.title, "starts_at": args.starts, "ends_at": args.ends,
             "timezone": args.tz, "expected_audience": args.audience, "region": args.region,
             "live_ladders": args.ladders}
    return {k: v for k, v in pairs.items() if v is not None}


def store_for(settings: Settings):
    """A CapacityStore on FANDOM_REDIS_URL (close its client when done)."""
    if not settings.redis_url:
        raise ConfigError("FANDOM_REDIS_URL is not set: the calendar lives in the Redis that "
                          "`fandom up` uses (it prints the URL); set FANDOM_REDIS_URL to it")
    return CapacityStore(async_client(settings.redis_url, name="fandom-cli"))


def run(args) -> int:
    return asyncio.run(_run(args, Settings.from_env()))


async def _run(args, settings: Settings) -> int:
    store = store_for(settings)
    model = CapacityModel.from_settings(settings)
    try:
        now = datetime.now(UTC)
        if args.op == "add":
            concert = calendar.parse_concert({**_fields(args), **({"id": args.id} if args.id else {})},
                                             now=now)
            await store.add(concert)
            print(f"added {concert.id}")
            _print([concert], await store.now(settings.capacity_clock), model)
        elif args.op == "update":
            merged = calendar.merge(await store.get(args.id), _fields(args))
            concert = calendar.parse_concert(merged, now=now, concert_id=args.id)
            await store.replace(concert)
            print(f"updated {concert.id}")
            _print([concert], await store.now(settings.capacity_clock), model)
        elif args.op == "remove":
            await store.remove(args.id)
            print(f"removed {args.id}")
        else:
            at = await store.now(settings.capacity_clock)
            concerts, problems = await store.concerts()
            if not args.all:
                concerts = [c for c in concerts if phase(c, at, model) != "over"]
            if args.json:
                print(json.dumps({"concerts": [{**calendar.in_zone(c).to_json(),
                                                "phase": phase(c, at, model)} for c in concerts],
                                  "problems": problems}, indent=2))
            else:
                _print(concerts, at, model)
                for line in problems:
                    print(f"PROBLEM: {line}")
        return 0
    finally:
        await store.redis.aclose()


def _print(concerts, at: float, model: CapacityModel) -> None:
    if not concerts:
        print("no concerts")
        return
    print(f"{'ID':<14} {'PHASE':<9} {'STARTS':<26} {'ENDS':<26} {'FANS':>10} {'CHAT':>5} "
          f"{'LADDERS':>7}  TITLE")
    for c in concerts:
        z = calendar.in_zone(c)
        print(f"{c.id:<14} {phase(c, at, model):<9} {z.starts_at.isoformat():<26} "
              f"{z.ends_at.isoformat():<26} {c.expected_audience:>10,} "
              f"{model.replicas_for(c.expected_audience):>5} {c.live_ladders:>7}  {c.title}"
              + (f"  [{c.timezone}]" if c.timezone else "") + (f"  ({c.region})" if c.region else ""))
