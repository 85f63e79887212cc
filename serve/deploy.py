"""The one path that applies fandom's declarative Serve config, and the chat floor.

``fandom up`` (cluster/up.py) and the capacity applier (actors/capacity_applier.py)
both deploy through here. Re-applying the same config with only the chat
deployment's ``min_replicas``/``initial_replicas``/``max_replicas`` changed keeps the
application's code version (Serve hashes import path, args, runtime env and the
autoscaling policy, not replica bounds), so Serve reconfigures in place: existing
replicas and their sockets stay, new ones are added (tests/test_chat_floor.py).

Anything else changing would give the app a new code version and replace every chat
replica, dropping every fan's socket. So before moving the floor we compare the
config we are about to send with what Serve runs and refuse (``serve_config_drift``)
if they differ in more than the floor.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass

from cluster.errors import ConfigError, Unavailable
from cluster.settings import Settings
from serve.config import API_APP, CHAT_APP, CHAT_DEPLOYMENT, serve_config

# The chat deployment's bound fields the floor may move; nothing else may differ.
FLOOR_FIELDS = ("min_replicas", "initial_replicas", "max_replicas")


def _client():
    from ray import serve

    return serve.context._get_global_client()


def deploy(settings: Settings, *, chat_min_replicas: int | None = None,
           timeout_s: float = 180.0) -> None:
    """Start Serve if needed, apply fandom's declarative config and wait until both apps run."""
    from ray import serve

    serve.start(http_options={"host": settings.host, "port": settings.http_port})
    apply(settings, chat_min_replicas=chat_min_replicas)
    wait_running(timeout_s)


def apply(settings: Settings, *, chat_min_replicas: int | None = None) -> None:
    """Send the declarative config to the Serve controller (returns before replicas move)."""
    from ray.serve.schema import ServeDeploySchema

    config = serve_config(settings, chat_min_replicas=chat_min_replicas)
    _client().deploy_apps(ServeDeploySchema.model_validate(config))


def wait_running(timeout_s: float) -> None:
    from ray import serve
    from ray.serve.schema import ApplicationStatus

    deadline = time.monotonic() + timeout_s
    while True:
        apps = serve.status().applications
        states = {name: apps[name].status if name in apps else "MISSING" for name in (API_APP, CHAT_APP)}
        if all(s == ApplicationStatus.RUNNING for s in states.values()):
            return
        failed = {n: apps[n].message for n, s in states.items() if s == ApplicationStatus.DEPLOY_FAILED}
        if failed:
            raise Unavailable(f"Serve deployment failed: {failed}")
        if time.monotonic() > deadline:
            raise Unavailable(f"Serve apps not running after {timeout_s}s: {states}")
        time.sleep(0.5)


@dataclass(frozen=True)
class ChatState:
    floor: int | None              # deployed autoscaling_config.min_replicas
    target: int | None             # replicas Serve is steering towards
    running: list[str]             # ids of RUNNING replicas
    nodes: dict[str, str]          # replica id -> node id

    def to_json(self) -> dict:
        return {"floor": self.floor, "target": self.target, "running": len(self.running),
                "replicas": [{"id": r, "node_id": self.nodes.get(r)} for r in self.running]}


def chat_state(details: dict | None = None) -> ChatState:
    """What Serve runs for the chat deployment right now (or in ``details``)."""
    details = details if details is not None else _client().get_serve_details()
    app = (details.get("applications") or {}).get(CHAT_APP)
    if not app:
        return ChatState(None, None, [], {})
    dep = (app.get("deployments") or {}).get(CHAT_DEPLOYMENT) or {}
    auto = ((dep.get("deployment_config") or {}).get("autoscaling_config") or {})
    running = [r for r in dep.get("replicas") or [] if r.get("state") == "RUNNING"]
    return ChatState(floor=auto.get("min_replicas"), target=dep.get("target_num_replicas"),
                     running=[r["replica_id"] for r in running],
                     nodes={r["replica_id"]: r.get("node_id") for r in running})


def set_chat_floor(settings: Settings, floor: int) -> bool:
    """Make ``floor`` the chat deployment's min_replicas in place; False if it already is.

    Raises ConfigError(serve_config_drift) instead of deploying anything that would
    restart replicas.
    """
    details = _client().get_serve_details()
    ours = serve_config(settings, chat_min_replicas=floor)
    drift = config_drift(details, ours)
    if drift:
        raise ConfigError(
            f"the Serve config running differs from the one fandom would apply ({drift}); "
            "applying ours could restart chat replicas and drop fans' sockets, so the floor "
            "was not moved. Redeploy with the same FANDOM_* settings (`fandom up`, or "
            "`fandom config serve` + `serve deploy`), then the applier retries.",
            code="serve_config_drift")
    # Compare with the floor last *requested*, not the deployment's live config: the
    # controller applies a new config asynchronously, so right after a move the live
    # value still shows the old floor and would make a repeat look like a change.
    if requested_floor(details) == floor:
        return False
    apply(settings, chat_min_replicas=floor)
    return True


def requested_floor(details: dict) -> int | None:
    """The chat min_replicas in the config Serve was last given (None if not from a config)."""
    app = ((details.get("applications") or {}).get(CHAT_APP) or {}).get("deployed_app_config")
    for dep in (app or {}).get("deployments") or []:
        if dep.get("name") == CHAT_DEPLOYMENT:
            return (dep.get("autoscaling_config") or {}).get("min_replicas")
    return None


def config_drift(details: dict, ours: dict) -> str:
    """'' if the running apps equal ``ours`` up to the chat floor fields, else what differs."""
    running = {name: app.get("deployed_app_config")
               for name, app in (details.get("applications") or {}).items()}
    wanted = {app["name"]: app for app in ours["applications"]}
    if set(running) != set(wanted):
        return f"applications {sorted(running)} running, {sorted(wanted)} configured"
    for name, app in wanted.items():
        have = running[name]
        if have is None:
            return f"application {name!r} was not deployed from a config"
        for key in ("import_path", "args", "runtime_env", "route_prefix"):
            if _norm(have.get(key)) != _norm(app.get(key)):
                return f"{name}.{key}"
        have_deps = {d["name"]: d for d in have.get("deployments") or []}
        for dep in app.get("deployments") or []:
            mine, theirs = _strip_floor(dep), _strip_floor(have_deps.get(dep["name"], {}))
            for key in sorted(set(mine) | set(theirs)):
                if _norm(mine.get(key)) != _norm(theirs.get(key)):
                    return f"{name}.{dep['name']}.{key}"
    return ""


def _strip_floor(dep: dict) -> dict:
    dep = copy.deepcopy(dep)
    for key in FLOOR_FIELDS:
        (dep.get("autoscaling_config") or {}).pop(key, None)
    return dep


def _norm(v):
    # Serve echoes configs back with defaults filled in for some nested models:
    # compare only what we set, treating {} / None / missing alike.
    if isinstance(v, dict):
        return {k: _norm(x) for k, x in v.items() if x not in (None, {}, [])}
    if isinstance(v, list):
        return [_norm(x) for x in v]
    if isinstance(v, float) and v.is_integer():
        return int(v)
    return v
