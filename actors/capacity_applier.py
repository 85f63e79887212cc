"""The capacity applier: a detached, named, restartable Ray actor that applies the plan.

Every tick it reads the calendar (and any override) from Redis, asks the pure
planner (cluster/capacity.py) for the plan in force at its clock's time and makes
the cluster match it (a changed plan is logged as a change; an unchanged one is
re-asserted, so a redeploy that reset the floor is corrected within a tick):

- its bundles in the cluster's standing autoscaler request (``request_bundles``:
  through Ray's AutoscalingCoordinator, which Ray Data and Ray Train share, so their
  requests and ours are merged instead of overwriting each other) so Ray's autoscaler
  launches chat and transcoding nodes ahead of the show (and may release them once
  cleared);
- the chat deployment's ``min_replicas`` through the declarative Serve path
  (serve/deploy.py), which adds replicas without restarting the ones holding sockets.

What it applied is written to Redis *after* it succeeded. A restarted applier first
re-asserts that record (both operations are idempotent) and only then re-plans, so a
crash mid-concert never releases anything early. Every change, failure and recovery
is logged (Python logging and the Redis stream ``keys.CAPACITY_LOG``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import ray

from cluster.capacity import CapacityModel, Plan, plan_at
from cluster.capacity_store import CapacityStore
from cluster.errors import FandomError
from cluster.redis_conn import async_client
from cluster.settings import ON_HEAD_NODE, RAY_NAMESPACE, Settings
from serve.deploy import chat_state, set_chat_floor

log = logging.getLogger("fandom.capacity")

APPLIER_NAME = "fandom-capacity-applier"


@dataclass
class Effects:
    """The applier's hands on the cluster (blocking calls; run in a thread)."""
    request: Callable[[list[dict]], None]       # standing autoscaler request
    set_floor: Callable[[int], bool]            # chat min_replicas; True if it changed
    observe: Callable[[], dict[str, Any]]       # nodes, chat replicas, autoscaler request


class Applier:
    """The applier's logic, with its clock and its effects passed in."""

    def __init__(self, model: CapacityModel, store: CapacityStore, effects: Effects,
                 clock: Callable[[], Awaitable[float | None]]):
        self.model, self.store, self.effects, self.clock = model, store, effects, clock
        self.last_error = ""

    async def recover(self) -> None:
        """Re-assert what was last applied (restart after a crash, or a new `fandom up`)."""
        record = await self.store.applied()
        if not record:
            await self.store.log("started", note="nothing applied before")
            return
        req = record["requested"]
        await asyncio.to_thread(self.effects.request, req["bundles"])
        await asyncio.to_thread(self.effects.set_floor, req["chat_floor"])
        log.info("recovered: re-applied floor=%s bundles=%d from Redis", req["chat_floor"],
                 len(req["bundles"]))
        await self.store.log("recovered", requested=req, plan_at=record.get("plan", {}).get("at"))

    async def step(self) -> Plan | None:
        """One tick: plan at the clock's time and make the cluster match it.

        Returns None (and touches nothing) while a rehearsal clock is unset.
        """
        now = await self.clock()
        if now is None:
            return None
        concerts, _ = await self.store.concerts()
        plan = plan_at(concerts, now, self.model, await self.store.override())
        record = await self.store.applied()
        before = record["requested"] if record else None
        try:
            if before == plan.requested:
                await self._keep(plan)
                return plan
            await self._apply(plan, before)
        except (FandomError, ray.exceptions.RayError, OSError) as e:
            message = f"{getattr(e, 'code', type(e).__name__)}: {e}"
            if message != self.last_error:  # log a failure once, not every tick
                log.error("applying plan failed (will retry every tick): %s", message)
                await self.store.log("apply_failed", error=message, wanted=plan.requested)
            self.last_error = message
            return plan
        self.last_error = ""
        await self.store.set_applied({"requested": plan.requested, "plan": plan.to_json(),
                                      "applied_at": time.time()})
        log.info("applied plan at %s: floor %s -> %s, bundles %s -> %s, active %s", now,
                 before and before["chat_floor"], plan.chat_floor,
                 before and len(before["bundles"]), len(plan.bundles),
                 [(a.concert_id, a.phase) for a in plan.active])
        await self.store.log("applied", before=before, after=plan.requested,
                             plan_at=now, active=[a.__dict__ for a in plan.active])
        return plan

    async def _keep(self, plan: Plan) -> None:
        # Unchanged plan: hold it in place. Re-registering refreshes the coordinator's
        # expiry (and repairs a direct request_resources() by anyone else), and a redeploy
        # (`fandom up`, `serve deploy`, KubeRay re-submitting its spec) resets the floor;
        # both calls are no-ops when nothing moved.
        await asyncio.to_thread(self.effects.request, plan.bundles)
        if await asyncio.to_thread(self.effects.set_floor, plan.chat_floor):
            log.warning("chat floor had been changed outside the applier; restored %s",
                        plan.chat_floor)
            await self.store.log("floor_restored", chat_floor=plan.chat_floor)
        self.last_error = ""

    async def _apply(self, plan: Plan, before: dict | None) -> None:
        raising = before is None or plan.chat_floor >= before["chat_floor"]
        # Nodes take longest, so ask for them first when growing; when shrinking, lower
        # the floor first so replicas leave the nodes the request no longer holds.
        if raising:
            await asyncio.to_thread(self.effects.request, plan.bundles)
            await asyncio.to_thread(self.effects.set_floor, plan.chat_floor)
        else:
            await asyncio.to_thread(self.effects.set_floor, plan.chat_floor)
            await asyncio.to_thread(self.effects.request, plan.bundles)

    async def observe(self, plan: Plan | None) -> None:
        try:
            seen = await asyncio.to_thread(self.effects.observe)
        except Exception as e:  # observing is best effort; applying is what matters
            seen = {"observe_error": f"{type(e).__name__}: {e}"}
        await self.store.set_observed({**seen, "observed_at": time.time(),
                                       "clock_at": plan.at if plan else None,
                                       "last_error": self.last_error or None})

    async def run(self, tick_s: float, stop: threading.Event) -> None:
        try:
            await self.recover()
        except Exception as e:  # never release on a failed recovery: the next tick re-asserts
            log.exception("recovery failed; the next tick re-asserts the plan")
            await self.store.log("recover_failed", error=f"{type(e).__name__}: {e}")
        while not stop.is_set():
            plan = None
            try:
                plan = await self.step()
            except Exception:
                log.exception("capacity tick failed; retrying next tick")
            await self.observe(plan)
            await asyncio.sleep(tick_s)


# --- the Ray side --------------------------------------------------------------------

# request_resources() holds ONE standing request per cluster: the last writer wins. In
# Ray 2.60, Ray Data (its default rate-based cluster autoscaler) and Ray Train register
# their needs with a detached "AutoscalingCoordinator" actor that merges every
# requester's bundles and re-writes that standing request every 20 s. A direct
# request_resources() from us was wiped to [] within 20 s of any Ray Data job
# (tests/test_capacity_e2e.py caught it mid-concert). So the applier registers as one
# more requester there and the coordinator keeps our bundles in the merged request.
REQUESTER_ID = "fandom-capacity"
# The coordinator drops a requester that stops re-asserting. The applier re-asserts
# every tick; a dead applier is restarted by Ray within seconds, so this only bounds
# how long capacity outlives an applier that is gone for good.
REQUEST_TTL_S = 900.0
COORDINATOR_TIMEOUT_S = 30.0


def request_bundles(bundles: list[dict]) -> None:
    """Make ``bundles`` fandom's share of the cluster's standing autoscaler request."""
    from ray.autoscaler.sdk import request_resources

    try:
        from ray.data._internal.cluster_autoscaler import get_or_create_autoscaling_coordinator
    except ImportError:  # ray without Ray Data: nobody else merges, we own the request
        request_resources(bundles=bundles)
        return
    coordinator = get_or_create_autoscaling_coordinator()
    try:
        ray.get(coordinator.request_resources.remote(
            requester_id=REQUESTER_ID, resources=bundles, expire_after_s=REQUEST_TTL_S),
            timeout=COORDINATOR_TIMEOUT_S)
    except (ray.exceptions.RayActorError, ray.exceptions.GetTimeoutError) as e:
        # A coordinator that cannot answer cannot overwrite us either: write directly
        # so the concert's nodes still come (retried every tick via the coordinator).
        log.warning("autoscaling coordinator unavailable (%s); requesting directly",
                    type(e).__name__)
        request_resources(bundles=bundles)


def ray_effects(settings: Settings) -> Effects:
    return Effects(request=request_bundles,
                   set_floor=lambda floor: set_chat_floor(settings, floor),
                   observe=lambda: observe_cluster(settings))


def observe_cluster(settings: Settings) -> dict[str, Any]:
    nodes = []
    for n in ray.nodes():
        if not n.get("Alive"):
            continue
        res = n.get("Resources") or {}
        kind = ("head" if "node:__internal_head__" in res else
                "chat" if settings.capacity_chat_resource in res else
                "transcode" if settings.capacity_transcode_resource in res else "other")
        nodes.append({"node_id": n["NodeID"], "type": kind,
                      "resources": {k: v for k, v in res.items() if not k.startswith("node:")
                                    and k not in ("memory", "object_store_memory")}})
    return {"nodes": nodes, "chat": chat_state().to_json(),
            "autoscaler_request": autoscaler_request()}


def autoscaler_request() -> list[dict] | None:
    """The standing request_resources bundles as the (v1) autoscaler sees them."""
    from ray.autoscaler._private.constants import AUTOSCALER_RESOURCE_REQUEST_CHANNEL
    from ray.autoscaler.v2.utils import is_autoscaler_v2
    from ray.experimental.internal_kv import _internal_kv_get

    if is_autoscaler_v2():
        return None  # v2 keeps it in GCS state, not KV; `ray status` shows it
    raw = _internal_kv_get(AUTOSCALER_RESOURCE_REQUEST_CHANNEL)
    # None: never requested. A cleared request reads as [] (written as "[]"). With Ray
    # Data/Train on the cluster this is the coordinator's merged request, not only ours.
    return json.loads(raw) if raw else None


@ray.remote(num_cpus=0, max_restarts=-1)
class CapacityApplier:
    """Hosts an Applier on a background thread; Ray restarts it if its process dies."""

    def __init__(self, env: dict[str, str]):
        logging.basicConfig(level=logging.INFO)
        self.settings = Settings.from_env({**os.environ, **env})
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._main, daemon=True, name="capacity-applier")
        self._thread.start()

    def _main(self) -> None:
        s = self.settings
        store = CapacityStore(async_client(s.redis_url, name="fandom-capacity"))

        async def clock() -> float | None:
            return time.time() if s.capacity_clock == "system" else await store.clock()

        try:
            applier = Applier(CapacityModel.from_settings(s), store, ray_effects(s), clock)
            asyncio.run(applier.run(s.capacity_tick_s, self._stop))
        finally:
            if not self._stop.is_set():
                # Crash-only: a dead loop in a live actor would hold nothing. Exiting the
                # process makes Ray restart the actor, which recovers from Redis.
                log.critical("capacity loop ended unexpectedly; exiting so Ray restarts us")
                os._exit(1)

    def alive(self) -> dict:
        return {"pid": os.getpid(), "thread_alive": self._thread.is_alive(),
                "clock": self.settings.capacity_clock}


def ensure_applier(settings: Settings):
    """Get or create the detached applier (idempotent; `fandom up` calls it)."""
    return CapacityApplier.options(
        name=APPLIER_NAME, namespace=RAY_NAMESPACE, lifetime="detached", get_if_exists=True,
        # On the head: it must outlive every worker node it asks the autoscaler for.
        resources=ON_HEAD_NODE,
    ).remote(settings.to_env(secrets=False))
