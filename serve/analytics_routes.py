"""Ops API for chat analytics: the summary of `fandom analytics summary`, as JSON."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query

from cluster.errors import NotFoundError
from cluster.tokens import Claims
from serve.deps import ApiState, api_state, require_ops

router = APIRouter(tags=["analytics"])


@router.get("/api/analytics/summary")
def chat_summary(room: str | None = None,
                 start: str | None = Query(None, alias="from", description="UTC ISO 8601, inclusive"),
                 end: str | None = Query(None, alias="to", description="UTC ISO 8601, exclusive"),
                 top: int = Query(10, ge=1, le=1000),
                 state: ApiState = Depends(api_state), _: Claims = Depends(require_ops)) -> dict:
    """Every analytic of the archive for a room and time range (reads FANDOM_DATA_DIR).

    A plain ``def``: FastAPI runs it on a worker thread, so the scan never blocks the loop.
    """
    from jobs import analytics

    query = analytics.Query(room, analytics.parse_time(start, "from"), analytics.parse_time(end, "to"))
    try:
        result = analytics.summary(state.settings.data_dir, query, top)
    except FileNotFoundError:
        raise NotFoundError("no chat archive yet", code="archive_not_found") from None
    return {"room": room, "from": start, "to": end, **analytics.as_json(result)}
