"""Ops API for the concert calendar and scheduled capacity (ops role; fans get 403).

    GET    /api/concerts                 the calendar, with each concert's phase now
    POST   /api/concerts                 add one (201; 409 concert_exists; 422 invalid_concert)
    GET    /api/concerts/{id}            one (404 concert_not_found)
    PUT    /api/concerts/{id}            replace it
    PATCH  /api/concerts/{id}            change some fields
    DELETE /api/concerts/{id}            remove it (its capacity goes at the next tick)
    GET    /api/capacity                 plan in force, what was requested, nodes, replicas
    GET    /api/capacity/plan?at=&hours= the plan at a time and the timeline after it
    PUT    /api/capacity/override        a manual minimum until a time
    DELETE /api/capacity/override        drop it
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Body, Depends, Response

from cluster import calendar
from cluster.calendar import Concert
from cluster.capacity import CapacityModel, parse_override, phase, plan_at, timeline
from cluster.capacity_store import CapacityStore
from cluster.errors import InvalidInput
from cluster.tokens import Claims
from serve.deps import ApiState, api_state, require_ops

router = APIRouter(tags=["capacity"])


def _store(state: ApiState) -> CapacityStore:
    return CapacityStore(state.redis)


def _view(c: Concert, now: float, model: CapacityModel) -> dict[str, Any]:
    opens, closes = model.window(c)
    return {**calendar.in_zone(c).to_json(), "phase": phase(c, now, model),
            "chat_replicas": model.replicas_for(c.expected_audience),
            "capacity_from": _iso(opens), "capacity_until": _iso(closes)}


def _iso(ts: float | None) -> str | None:
    return None if ts is None else datetime.fromtimestamp(ts, UTC).isoformat()


def _warnings(c: Concert, now: float, model: CapacityModel) -> list[str]:
    if model.window(c)[0] < now < c.start_ts:
        return [f"starts in {(c.start_ts - now) / 60:.0f} min, less than the "
                f"{model.lead_s / 60:.0f} min lead time: capacity is requested now and may "
                "not be ready for doors"]
    return []


@router.get("/api/concerts")
async def list_concerts(state: ApiState = Depends(api_state), _: Claims = Depends(require_ops)):
    store, model = _store(state), CapacityModel.from_settings(state.settings)
    now = await store.now(state.settings.capacity_clock)
    concerts, problems = await store.concerts()
    return {"concerts": [_view(c, now, model) for c in concerts], "problems": problems}


@router.post("/api/concerts", status_code=201)
async def add_concert(payload: Any = Body(...), state: ApiState = Depends(api_state),
                      _: Claims = Depends(require_ops)):
    store, model = _store(state), CapacityModel.from_settings(state.settings)
    concert = calendar.parse_concert(payload, now=datetime.now(UTC))
    await store.add(concert)
    now = await store.now(state.settings.capacity_clock)
    return {"concert": _view(concert, now, model), "warnings": _warnings(concert, now, model)}


@router.get("/api/concerts/{concert_id}")
async def get_concert(concert_id: str, state: ApiState = Depends(api_state),
                      _: Claims = Depends(require_ops)):
    store, model = _store(state), CapacityModel.from_settings(state.settings)
    concert = await store.get(concert_id)
    return {"concert": _view(concert, await store.now(state.settings.capacity_clock), model)}


@router.put("/api/concerts/{concert_id}")
async def replace_concert(concert_id: str, payload: Any = Body(...),
                          state: ApiState = Depends(api_state), _: Claims = Depends(require_ops)):
    return await _save(state, calendar.parse_concert(payload, now=datetime.now(UTC),
                                                     concert_id=concert_id))


@router.patch("/api/concerts/{concert_id}")
async def update_concert(concert_id: str, payload: Any = Body(...),
                         state: ApiState = Depends(api_state), _: Claims = Depends(require_ops)):
    if not isinstance(payload, dict):
        raise InvalidInput("body must be a JSON object of the fields to change",
                           code=calendar.INVALID_CONCERT)
    existing = await _store(state).get(concert_id)
    return await _save(state, calendar.parse_concert(calendar.merge(existing, payload),
                                                     now=datetime.now(UTC), concert_id=concert_id))


async def _save(state: ApiState, concert: Concert) -> dict:
    store, model = _store(state), CapacityModel.from_settings(state.settings)
    await store.replace(concert)
    now = await store.now(state.settings.capacity_clock)
    return {"concert": _view(concert, now, model), "warnings": _warnings(concert, now, model)}


@router.delete("/api/concerts/{concert_id}", status_code=204)
async def delete_concert(concert_id: str, state: ApiState = Depends(api_state),
                         _: Claims = Depends(require_ops)):
    await _store(state).remove(concert_id)
    return Response(status_code=204)


@router.get("/api/capacity")
async def capacity(state: ApiState = Depends(api_state), _: Claims = Depends(require_ops)):
    store, model = _store(state), CapacityModel.from_settings(state.settings)
    now = await store.now(state.settings.capacity_clock)
    concerts, problems = await store.concerts()
    plan = plan_at(concerts, now, model, await store.override())
    applied, observed = await store.applied(), await store.observed()
    requested = applied["requested"] if applied else {"chat_floor": model.base_floor, "bundles": []}
    return {
        "now": _iso(now), "clock": state.settings.capacity_clock,
        "plan": {**plan.to_json(), "next_change_at": _iso(plan.next_change_at)},
        "requested": {**requested, "applied_at": _iso(applied and applied["applied_at"])},
        "in_sync": requested == plan.requested,
        # The applier writes this every tick with a TTL: null means it is not running.
        "applier_alive": observed is not None,
        "nodes": (observed or {}).get("nodes"),
        "chat": (observed or {}).get("chat"),
        "autoscaler_request": (observed or {}).get("autoscaler_request"),
        "last_error": (observed or {}).get("last_error"),
        "observed_at": _iso((observed or {}).get("observed_at")),
        "recent_changes": await store.recent(10),
        "problems": problems,
    }


@router.get("/api/capacity/plan")
async def capacity_plan(at: str | None = None, hours: float = 24.0,
                        state: ApiState = Depends(api_state), _: Claims = Depends(require_ops)):
    store, model = _store(state), CapacityModel.from_settings(state.settings)
    start = calendar.parse_instant(at).timestamp() if at else await store.now(state.settings.capacity_clock)
    if not 0 < hours <= 24 * 14:
        raise InvalidInput("hours must be in (0, 336]", code="invalid_input")
    concerts, problems = await store.concerts()
    override = await store.override()
    plan = plan_at(concerts, start, model, override)
    return {"plan": {**plan.to_json(), "next_change_at": _iso(plan.next_change_at)},
            "timeline": [{"from": _iso(s.start), "until": _iso(s.end),
                          "chat_floor": s.plan.chat_floor, "bundles": len(s.plan.bundles),
                          "active": [a.__dict__ for a in s.plan.active]}
                         for s in timeline(concerts, start, start + hours * 3600, model, override)],
            "problems": problems}


@router.put("/api/capacity/override")
async def put_override(payload: Any = Body(...), state: ApiState = Depends(api_state),
                       claims: Claims = Depends(require_ops)):
    override = parse_override(payload, now=time.time(), by=claims.user)
    await _store(state).set_override(override)
    return {"override": {**override.to_json(), "until": _iso(override.until)}}


@router.delete("/api/capacity/override", status_code=204)
async def delete_override(state: ApiState = Depends(api_state), _: Claims = Depends(require_ops)):
    await _store(state).set_override(None)
    return Response(status_code=204)
