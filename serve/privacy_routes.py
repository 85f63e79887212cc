"""Ops API for GDPR requests: erase a fan's messages (through the archiver actor)."""

from __future__ import annotations

from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field

from cluster.tokens import Claims
from serve.deps import require_ops

router = APIRouter(tags=["privacy"])


class EraseRequest(BaseModel):
    user: str = Field(min_length=1, max_length=64, description="the user id (token sub) to erase")


@router.post("/api/privacy/erasures")
async def erase_user(body: EraseRequest, _: Claims = Depends(require_ops)) -> dict:
    """Remove the user's messages from Redis history and the Parquet archive; report counts.

    Idempotent: erasing again removes nothing more. 503 ``unavailable`` when the archiver
    is not running.
    """
    from actors.archiver import get_archiver

    return await get_archiver().erase.remote(body.user)
