"""The capacity planner: calendar + time + model in, the plan in force out.

Pure: no Ray, no Redis, no clock of its own. Each concert needs capacity over its
*window* ``[starts_at - lead, ends_at + hold)``; inside it the concert wants
``ceil(audience * headroom / fans_per_replica)`` chat replicas and its live ladders.
Concerts whose windows overlap add up. The plan is

- ``chat_floor``: the Serve chat deployment's ``min_replicas`` (never below the
  everyday floor, never above the configured maximum, with a warning when capped);
- ``bundles``: what ``ray.autoscaler.sdk.request_resources`` should hold: one bundle
  per planned chat replica and one per live ladder, each tagged with the custom
  resource of the node type it must land on (ray-cluster.yaml), empty when no
  window is open so the cluster can shrink back to its ``min_workers``;
- ``next_change_at``: the next window boundary, so callers know when to look again.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from cluster.calendar import Concert, parse_instant
from cluster.errors import InvalidInput
from cluster.settings import Settings

Bundle = dict[str, float]


@dataclass(frozen=True)
class CapacityModel:
    fans_per_replica: int = 25_000
    cpus_per_replica: float = 0.25
    cpus_per_ladder: float = 4.0
    lead_s: float = 1800.0
    hold_s: float = 900.0
    headroom: float = 1.25
    base_floor: int = 2            # the everyday chat floor (FANDOM_CHAT_REPLICAS)
    max_replicas: int = 8          # FANDOM_CHAT_MAX_REPLICAS
    chat_resource: str = "fandom_chat"
    transcode_resource: str = "fandom_transcode"
    region: str = ""               # "" plans every concert; else only this region's (and region-less)
    horizon_s: float = 7 * 86400   # concerts whose window opens later than this are ignored

    @classmethod
    def from_settings(cls, s: Settings) -> CapacityModel:
        return cls(fans_per_replica=s.fans_per_replica, cpus_per_replica=s.chat_replica_cpus,
                   cpus_per_ladder=s.capacity_cpus_per_ladder, lead_s=s.capacity_lead_s,
                   hold_s=s.capacity_hold_s, headroom=s.capacity_headroom,
                   base_floor=s.chat_replicas, max_replicas=s.chat_max_replicas,
                   chat_resource=s.capacity_chat_resource,
                   transcode_resource=s.capacity_transcode_resource, region=s.capacity_region)

    def replicas_for(self, audience: int) -> int:
        return math.ceil(audience * self.headroom / self.fans_per_replica)

    def window(self, c: Concert) -> tuple[float, float]:
        return c.start_ts - self.lead_s, c.end_ts + self.hold_s

    def chat_bundle(self) -> Bundle:
        return {"CPU": self.cpus_per_replica, self.chat_resource: 1.0}

    def ladder_bundle(self) -> Bundle:
        return {"CPU": self.cpus_per_ladder, self.transcode_resource: 1.0}


@dataclass(frozen=True)
class Override:
    """An operator's manual minimum, in force until ``until`` (unix seconds)."""
    chat_replicas: int = 0
    live_ladders: int = 0
    until: float = 0.0
    reason: str = ""
    by: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"chat_replicas": self.chat_replicas, "live_ladders": self.live_ladders,
                "until": self.until, "reason": self.reason, "by": self.by}


def parse_override(payload: Any, *, now: float, by: str) -> Override:
    """Validate {chat_replicas, live_ladders, until, reason}; raise invalid_override."""
    def bad(msg: str) -> InvalidInput:
        return InvalidInput(msg, code="invalid_override")

    if not isinstance(payload, dict):
        raise bad("body must be a JSON object: {chat_replicas, live_ladders, until, reason}")
    chat, ladders = payload.get("chat_replicas", 0), payload.get("live_ladders", 0)
    for name, v in (("chat_replicas", chat), ("live_ladders", ladders)):
        if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= 10_000:
            raise bad(f"{name}: a whole number 0..10000")
    if chat == 0 and ladders == 0:
        raise bad("set chat_replicas and/or live_ladders above 0 (DELETE the override to drop it)")
    if not isinstance(payload.get("until"), str):
        raise bad("until: an ISO 8601 time with offset, e.g. 2026-07-01T23:30:00+02:00")
    try:
        until = parse_instant(payload["until"]).timestamp()
    except InvalidInput as e:
        raise bad(f"until: {e.message}") from None
    if until <= now:
        raise bad("until is in the past; an override must end in the future")
    reason = payload.get("reason")
    if not isinstance(reason, str) or not reason.strip():
        raise bad("reason: say why (it is shown to the next operator)")
    return Override(chat_replicas=chat, live_ladders=ladders, until=until, reason=reason.strip(), by=by)


@dataclass(frozen=True)
class Active:
    concert_id: str
    phase: str                     # "lead" | "live" | "hold"
    chat_replicas: int
    live_ladders: int


@dataclass(frozen=True)
class Plan:
    at: float
    chat_floor: int
    bundles: list[Bundle]
    active: list[Active] = field(default_factory=list)
    override: Override | None = None
    next_change_at: float | None = None
    warnings: list[str] = field(default_factory=list)

    @property
    def requested(self) -> dict[str, Any]:
        """The part an applier applies; two plans with equal ``requested`` need no action."""
        return {"chat_floor": self.chat_floor, "bundles": self.bundles}

    def to_json(self) -> dict[str, Any]:
        return {"at": self.at, "chat_floor": self.chat_floor, "bundles": self.bundles,
                "active": [a.__dict__ for a in self.active],
                "override": self.override.to_json() if self.override else None,
                "next_change_at": self.next_change_at, "warnings": self.warnings}


def relevant(concerts: list[Concert], model: CapacityModel) -> list[Concert]:
    """Concerts this cluster plans for (its region, or no region given)."""
    return [c for c in concerts if not model.region or c.region in (None, model.region)]


def plan_at(concerts: list[Concert], now: float, model: CapacityModel,
            override: Override | None = None) -> Plan:
    """The plan in force at ``now`` (unix seconds)."""
    active: list[Active] = []
    boundaries: list[float] = []
    for c in relevant(concerts, model):
        opens, closes = model.window(c)
        if opens - now > model.horizon_s:
            continue  # far future: it cannot matter before someone looks again
        boundaries += [opens, c.start_ts, c.end_ts, closes]
        if opens <= now < closes:
            phase = "lead" if now < c.start_ts else "live" if now < c.end_ts else "hold"
            active.append(Active(c.id, phase, model.replicas_for(c.expected_audience),
                                 c.live_ladders))
    if override is not None and override.until <= now:
        override = None
    if override is not None:
        boundaries.append(override.until)
    chat = sum(a.chat_replicas for a in active)
    ladders = sum(a.live_ladders for a in active)
    if override is not None:
        chat, ladders = max(chat, override.chat_replicas), max(ladders, override.live_ladders)
    warnings = []
    floor = max(model.base_floor, chat)
    if floor > model.max_replicas:
        warnings.append(f"chat floor capped at FANDOM_CHAT_MAX_REPLICAS={model.max_replicas} "
                        f"(the calendar asks for {floor}); raise it or expect crowded replicas")
        floor = model.max_replicas
    engaged = bool(active) or override is not None
    bundles = ([model.chat_bundle() for _ in range(floor)] if engaged else []) + \
              [model.ladder_bundle() for _ in range(ladders)]
    future = [b for b in boundaries if b > now]
    return Plan(at=now, chat_floor=floor, bundles=bundles, active=active, override=override,
                next_change_at=min(future) if future else None, warnings=warnings)


def phase(c: Concert, now: float, model: CapacityModel) -> str:
    """upcoming | lead | live | hold | over, at ``now``."""
    opens, closes = model.window(c)
    if now < opens:
        return "upcoming"
    if now >= closes:
        return "over"
    return "lead" if now < c.start_ts else "live" if now < c.end_ts else "hold"


@dataclass(frozen=True)
class Segment:
    start: float
    end: float
    plan: Plan


def timeline(concerts: list[Concert], start: float, end: float, model: CapacityModel,
             override: Override | None = None) -> list[Segment]:
    """The plans in force over ``[start, end)``, one segment per change."""
    out: list[Segment] = []
    t = start
    while t < end:
        p = plan_at(concerts, t, model, override)
        nxt = min(p.next_change_at or end, end)
        if out and _same(out[-1].plan, p):
            out[-1] = Segment(out[-1].start, nxt, out[-1].plan)
        else:
            out.append(Segment(t, nxt, p))
        t = nxt
    return out


def _same(a: Plan, b: Plan) -> bool:
    return a.requested == b.requested and \
        [(x.concert_id, x.phase) for x in a.active] == [(x.concert_id, x.phase) for x in b.active]


def pack(bundles: list[Bundle], node_types: dict[str, dict[str, float]]) -> dict[str, int]:
    """Nodes of each type needed to hold ``bundles`` (first-fit decreasing, per type).

    A bundle goes to the node types whose resources include all of its keys; among
    those, the first in ``node_types`` order. Raises ValueError naming any bundle that
    fits no node type (the planner and the cluster config disagree).
    """
    free: dict[str, list[dict[str, float]]] = {name: [] for name in node_types}
    for b in sorted(bundles, key=lambda b: -b.get("CPU", 0)):
        kinds = [n for n, res in node_types.items()
                 if all(res.get(k, 0) >= v for k, v in b.items())]
        if not kinds:
            raise ValueError(f"bundle {b} fits no node type of {sorted(node_types)}")
        kind = kinds[0]
        for node in free[kind]:
            if all(node.get(k, 0) >= v for k, v in b.items()):
                break
        else:
            node = dict(node_types[kind])
            free[kind].append(node)
        for k, v in b.items():
            node[k] -= v
    return {k: len(v) for k, v in free.items() if v}
