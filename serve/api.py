"""The HTTP API (ops, health, stats) as a FastAPI app behind Ray Serve's proxy.

Feature areas add their routes as ``APIRouter``s in their own ``serve/*_routes.py``
module and are listed in ``ROUTERS``. Every ``FandomError`` becomes a JSON error with
a stable ``code`` (docs/http-api.md).
"""

from __future__ import annotations

import json
import os
import time

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from ray import serve

from cluster import keys
from cluster.errors import FandomError
from cluster.redis_conn import async_client
from cluster.settings import Settings
from cluster.tokens import Claims
from serve import analytics_routes, capacity_routes, jobs_routes, media_routes, privacy_routes
from serve.deps import ApiState, api_state, install, require_ops, require_user

app = FastAPI(
    title="fandom",
    version="1",
    description="Ops and data API of the fandom live-concert backend. Chat itself is "
                "a WebSocket protocol on its own port: see docs/protocol.md.",
)

ROUTERS: list = [jobs_routes.router, media_routes.router, capacity_routes.router,  # feature routers,
                 privacy_routes.router, analytics_routes.router]                # included below


@app.exception_handler(FandomError)
async def _fandom_error(_: Request, e: FandomError) -> JSONResponse:
    return JSONResponse(e.to_json(), status_code=e.status)


@app.exception_handler(RequestValidationError)
async def _validation_error(_: Request, e: RequestValidationError) -> JSONResponse:
    first = e.errors()[0] if e.errors() else {}
    where = ".".join(str(p) for p in first.get("loc", ()))
    return JSONResponse({"code": "invalid_input", "message": f"{where}: {first.get('msg', 'invalid')}",
                         "errors": json.loads(json.dumps(e.errors(), default=str))},
                        status_code=422)


@app.get("/healthz", tags=["health"])
async def healthz(state: ApiState = Depends(api_state)) -> dict:
    await state.redis.ping()
    return {"status": "ok"}


@app.get("/api/whoami", tags=["auth"])
async def whoami(claims: Claims = Depends(require_user)) -> dict:
    return {"user": claims.user, "role": claims.role, "exp": claims.exp,
            "rooms": sorted(claims.rooms) if claims.rooms is not None else None}


@app.get("/api/chat/replicas", tags=["chat"])
async def chat_replicas(state: ApiState = Depends(api_state),
                        _: Claims = Depends(require_ops)) -> dict:
    """Live chat replicas and their connection counts (from their Redis heartbeats)."""
    raw = await state.redis.hgetall(keys.CHAT_REPLICAS)
    now = time.time()
    replicas = [json.loads(v) for v in raw.values()]
    live = [r for r in replicas if now - r["at"] < keys.CHAT_REPLICA_TTL_S]
    return {"replicas": sorted(live, key=lambda r: r["replica"]),
            "connections": sum(r["connections"] for r in live)}


for _router in ROUTERS:
    app.include_router(_router)


@serve.deployment(name="Api")
@serve.ingress(app)
class Api:
    def __init__(self, env: dict[str, str] | None = None):
        settings = Settings.from_env({**os.environ, **(env or {})})
        install(ApiState(settings, async_client(settings.redis_url, name="fandom-api")))
