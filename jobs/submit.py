"""Submitting a job: validate cheaply, write a queued record, poke the pool.

Shared by the HTTP API and the CLI. Checks that need no decoding happen here and fail
with a 422 and a code before any job exists (source_not_found, source_empty,
unknown_ladder, invalid_ladder, invalid_output, output_not_writable); anything that
needs ffmpeg (source_unreadable, no_video_stream, ...) ends as a failed job.
"""

from __future__ import annotations

import os

from cluster.errors import MediaError
from cluster.settings import Settings
from jobs import storage
from jobs.ladder import resolve_ladder
from jobs.model import JobRecord, JobSpec, new_job_id
from jobs.store import JobStore


def media_dir(settings: Settings) -> str:
    return settings.media_dir or os.path.join(settings.data_dir, "media")


def ladders_dir(settings: Settings) -> str:
    return settings.ladders_dir or os.path.join(settings.data_dir, "ladders")


def prepare(settings: Settings, *, source: str, output: str, ladder: str | dict | None = None,
            split: str | None = None, chunk_s: float | None = None, user: str = "") -> JobRecord:
    """A queued JobRecord for a valid request; MediaError (422, with a code) otherwise."""
    if split not in (None, "chunk", "rendition"):
        raise MediaError("split must be 'chunk' or 'rendition'", code="invalid_split")
    if chunk_s is not None and chunk_s < 0:
        raise MediaError("chunk_s must be >= 0 (0: never chunk)", code="invalid_chunk_s")
    resolved = resolve_ladder(ladder, ladders_dir(settings))
    storage.check_source(source)
    location, public = storage.output_location(output, media_dir(settings))
    storage.check_output(location)
    spec = JobSpec(source=source, output=location, ladder=resolved.to_json(), public_path=public,
                   split=split, chunk_s=chunk_s)
    return JobRecord(id=new_job_id(), spec=spec, submitted_by=user)


async def submit(settings: Settings, store: JobStore, record: JobRecord) -> JobRecord:
    """Store the record, then hand it to the pool (created on first use)."""
    from jobs.pool import get_pool

    await store.create(record)
    await get_pool(settings).submit.remote(record.id)
    return record
