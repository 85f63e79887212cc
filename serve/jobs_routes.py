"""The jobs API: ops submit, watch and cancel transcoding jobs (docs/transcoding.md).

Records live in Redis (jobs/store.py), so any API replica answers; the work runs in
the detached pool actor (jobs/pool.py), so it outlives this replica.
"""

from __future__ import annotations

import asyncio
from typing import Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, Field

from cluster.errors import FandomError, NotFoundError
from cluster.tokens import Claims
from jobs import submit as submitting
from jobs.model import JobStatus
from jobs.store import JobStore
from serve.deps import ApiState, api_state, require_ops

router = APIRouter(prefix="/api/jobs", tags=["jobs"])


class Rung(BaseModel):
    name: str | None = Field(None, description="folder name of the rung, default '<height>p'")
    height: int = Field(..., description="short side in pixels (height, or width of portrait sources)")
    video_kbps: int


class InlineLadder(BaseModel):
    name: str | None = None
    rungs: list[Rung]
    audio_kbps: int = 128
    segment_s: int = 4
    keyframe_s: int = 2


class JobRequest(BaseModel):
    source: str = Field(..., description="path on the cluster's shared storage, or a pyarrow.fs "
                        "URI (s3://bucket/key.mp4)", examples=["/data/uploads/show.mp4"])
    output: str = Field(..., description="a plain name (published under the media root and "
                        "served at /media/<name>/), an absolute path, or a URI",
                        examples=["berlin-2026"])
    ladder: str | InlineLadder | None = Field(
        None, description="preset name (default, apple), name of a file in FANDOM_LADDERS_DIR, "
        "or an inline ladder; default: 'default'")
    split: Literal["chunk", "rendition"] | None = Field(
        None, description="override FANDOM_TRANSCODE_SPLIT for this job")
    chunk_s: float | None = Field(
        None, ge=0, description="override FANDOM_TRANSCODE_CHUNK_S for this job (0: no chunks)")


class JobError(BaseModel):
    code: str
    message: str


class JobView(BaseModel):
    id: str
    status: JobStatus
    progress: float = Field(..., description="0-1, from ffmpeg's progress output")
    spec: dict[str, Any]
    submitted_by: str
    created_at: float
    started_at: float | None
    finished_at: float | None
    wall_s: float | None = Field(None, description="started -> finished, seconds")
    queued_s: float | None = None
    error: JobError | None
    result: dict[str, Any] | None = Field(None, description="playlists and measured renditions")
    urls: dict[str, str] | None = Field(None, description="master playlist and MPD URLs when "
                                        "the output is under the media root")
    runs: int


class JobList(BaseModel):
    jobs: list[JobView]


def _store(state: ApiState) -> JobStore:
    return JobStore(state.redis, ttl_s=state.settings.job_ttl_s)


def _base(state: ApiState, request: Request) -> str:
    return state.settings.public_url or str(request.base_url)


async def _get(store: JobStore, job_id: str):
    rec = await store.get(job_id)
    if rec is None:
        raise NotFoundError(f"no job {job_id!r} (finished jobs are kept FANDOM_JOB_TTL_S)",
                            code="job_not_found")
    return rec


@router.post("", status_code=202, response_model=JobView,
             responses={422: {"model": JobError, "description": "bad source/ladder/output; see code"}})
async def submit_job(body: JobRequest, request: Request, state: ApiState = Depends(api_state),
                     claims: Claims = Depends(require_ops)) -> dict:
    """Queue a transcoding job; poll GET /api/jobs/{id} for progress and outputs."""
    ladder = body.ladder.model_dump(exclude_none=True) if isinstance(body.ladder, InlineLadder) else body.ladder
    record = await asyncio.to_thread(
        submitting.prepare, state.settings, source=body.source, output=body.output,
        ladder=ladder, split=body.split, chunk_s=body.chunk_s, user=claims.user)
    await submitting.submit(state.settings, _store(state), record)
    return record.public(_base(state, request))


@router.get("", response_model=JobList)
async def list_jobs(request: Request, status: JobStatus | None = None,
                    limit: int = Query(50, ge=1, le=1000), state: ApiState = Depends(api_state),
                    _: Claims = Depends(require_ops)) -> dict:
    """Jobs, newest first."""
    base = _base(state, request)
    return {"jobs": [r.public(base) for r in await _store(state).list(limit=limit, status=status)]}


@router.get("/{job_id}", response_model=JobView, responses={404: {"model": JobError}})
async def get_job(job_id: str, request: Request, state: ApiState = Depends(api_state),
                  _: Claims = Depends(require_ops)) -> dict:
    return (await _get(_store(state), job_id)).public(_base(state, request))


@router.delete("/{job_id}", response_model=JobView,
               responses={404: {"model": JobError}, 409: {"model": JobError}})
async def cancel_job(job_id: str, request: Request, state: ApiState = Depends(api_state),
                     _: Claims = Depends(require_ops)) -> dict:
    """Cancel a queued or running job: its tasks stop and its staged output is removed."""
    from jobs.pool import get_pool

    store = _store(state)
    rec = await _get(store, job_id)
    if rec.status.terminal:
        raise FandomError(f"job {job_id} already {rec.status.value}; nothing to cancel",
                          code="job_finished", status=409)
    await get_pool(state.settings).cancel.remote(job_id)
    return (await _get(store, job_id)).public(_base(state, request))
