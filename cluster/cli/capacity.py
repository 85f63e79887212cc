"""`fandom capacity`: the plan (now or at a time, with a 24 h timeline), status, override, log."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from cluster import calendar
from cluster.capacity import CapacityModel, Plan, parse_override, plan_at, timeline
from cluster.cli.schedule import store_for
from cluster.settings import Settings


def register(sub) -> None:
    p = sub.add_parser("capacity", help="scheduled capacity: plan, status, override, log")
    ops = p.add_subparsers(dest="op", required=True, metavar="OP")
    plan = ops.add_parser("plan", help="the plan in force at a time, and the timeline after it")
    plan.add_argument("--at", help="ISO 8601 time (default: now); local to --tz if no offset")
    plan.add_argument("--tz", help="IANA zone for --at without an offset and for display")
    plan.add_argument("--hours", type=float, default=24.0, help="timeline length (default 24)")
    plan.add_argument("--json", action="store_true", help="JSON output")
    st = ops.add_parser("status", help="what the applier requested and saw (nodes, replicas)")
    st.add_argument("--json", action="store_true")
    ov = ops.add_parser("override", help="hold a minimum capacity until a time (or --clear)")
    ov.add_argument("--chat-replicas", type=int, default=0, help="chat floor at least this")
    ov.add_argument("--ladders", type=int, default=0, help="live ladders' nodes at least this")
    ov.add_argument("--until", help="ISO 8601 end of the override")
    ov.add_argument("--reason", help="why (shown to the next operator)")
    ov.add_argument("--clear", action="store_true", help="drop the override")
    lg = ops.add_parser("log", help="the applier's recent changes")
    lg.add_argument("-n", type=int, default=20)
    ck = ops.add_parser("clock", help="rehearsal clock (FANDOM_CAPACITY_CLOCK=redis only)")
    ck.add_argument("--set", dest="set_to", help="ISO 8601 time the applier should believe it is")
    ck.add_argument("--clear", action="store_true")
    p.set_defaults(func=run)


def run(args) -> int:
    return asyncio.run(_run(args, Settings.from_env()))


async def _run(args, settings: Settings) -> int:
    store = store_for(settings)
    try:
        ops = {"plan": _plan, "status": _status, "override": _override, "log": _log,
               "clock": _clock}
        return await ops[args.op](args, settings, store)
    finally:
        await store.redis.aclose()


async def _plan(args, settings, store) -> int:
    model = CapacityModel.from_settings(settings)
    at = (calendar.parse_instant(args.at, args.tz).timestamp() if args.at
          else await store.now(settings.capacity_clock))
    concerts, problems = await store.concerts()
    override = await store.override()
    plan = plan_at(concerts, at, model, override)
    segments = timeline(concerts, at, at + args.hours * 3600, model, override)
    if args.json:
        print(json.dumps({"plan": plan.to_json(), "timeline": [
            {"from": s.start, "until": s.end, **s.plan.requested,
             "active": [a.__dict__ for a in s.plan.active]} for s in segments],
            "problems": problems}, indent=2))
        return 0
    tz = ZoneInfo(args.tz) if args.tz else UTC
    show = lambda ts: datetime.fromtimestamp(ts, tz).isoformat(timespec="minutes")  # noqa: E731
    print(f"plan at {show(at)}")
    _print_plan(plan, model, show)
    print(f"\ntimeline, next {args.hours:g} h:")
    for s in segments:
        active = ", ".join(f"{a.concert_id}:{a.phase}" for a in s.plan.active) or "-"
        print(f"  {show(s.start)} .. {show(s.end)}  floor {s.plan.chat_floor:>3}  "
              f"bundles {len(s.plan.bundles):>3}  {active}")
    for line in problems:
        print(f"PROBLEM: {line}")
    return 0


def _print_plan(plan: Plan, model: CapacityModel, show) -> None:
    chat = sum(1 for b in plan.bundles if model.chat_resource in b)
    print(f"  chat floor     {plan.chat_floor}")
    print(f"  bundles        {len(plan.bundles)} ({chat} chat, {len(plan.bundles) - chat} ladder)")
    for a in plan.active:
        print(f"  active         {a.concert_id} ({a.phase}): {a.chat_replicas} chat replicas, "
              f"{a.live_ladders} ladders")
    if plan.override:
        print(f"  override       >= {plan.override.chat_replicas} chat, "
              f">= {plan.override.live_ladders} ladders until {show(plan.override.until)} "
              f"({plan.override.reason}, by {plan.override.by})")
    print(f"  next change    {show(plan.next_change_at) if plan.next_change_at else 'none planned'}")
    for w in plan.warnings:
        print(f"  WARNING        {w}")


async def _status(args, settings, store) -> int:
    applied, observed = await store.applied(), await store.observed()
    if args.json:
        print(json.dumps({"applied": applied, "observed": observed}, indent=2))
        return 0
    if not applied:
        print("requested      nothing yet (no concert window has opened)")
    else:
        req = applied["requested"]
        print(f"requested      chat floor {req['chat_floor']}, {len(req['bundles'])} bundles, at "
              f"{datetime.fromtimestamp(applied['applied_at'], UTC).isoformat(timespec='seconds')}")
    if observed is None:
        print("applier        NOT RUNNING (no observation in the last "
              "2 min); `fandom up` starts it")
        return 1
    age = time.time() - observed["observed_at"]
    print(f"applier        alive (observed {age:.0f}s ago)"
          + (f", LAST ERROR: {observed['last_error']}" if observed.get("last_error") else ""))
    chat = observed.get("chat") or {}
    print(f"chat           floor {chat.get('floor')}, target {chat.get('target')}, "
          f"running {chat.get('running')}")
    for n in observed.get("nodes") or []:
        print(f"node           {n['type']:<10} {n['node_id'][:12]}  {n['resources']}")
    return 0


async def _override(args, settings, store) -> int:
    if args.clear:
        await store.set_override(None)
        print("override cleared")
        return 0
    import getpass

    override = parse_override({"chat_replicas": args.chat_replicas, "live_ladders": args.ladders,
                               "until": args.until, "reason": args.reason},
                              now=time.time(), by=f"cli:{getpass.getuser()}")
    await store.set_override(override)
    print(f"override set until {datetime.fromtimestamp(override.until, UTC).isoformat()}")
    return 0


async def _log(args, settings, store) -> int:
    for e in await store.recent(args.n):
        at = datetime.fromtimestamp(e.pop("at"), UTC).isoformat(timespec="seconds")
        print(f"{at}  {e.pop('event'):<14} {json.dumps(e, sort_keys=True)}")
    return 0


async def _clock(args, settings, store) -> int:
    if args.clear:
        await store.set_clock(None)
    elif args.set_to:
        await store.set_clock(calendar.parse_instant(args.set_to))
    clock = await store.clock()
    mode = settings.capacity_clock
    print(f"clock mode {mode}; rehearsal clock "
          f"{datetime.fromtimestamp(clock, UTC).isoformat() if clock else 'unset'}"
          + ("" if mode == "redis" else " (ignored: FANDOM_CAPACITY_CLOCK=system)"))
    return 0
