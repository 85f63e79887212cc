"""Transcoding jobs as values: status, spec, record. Pure (Redis I/O is jobs/store.py)."""

from __future__ import annotations

import dataclasses
import uuid
from dataclasses import dataclass
from enum import Enum
from typing import Any


class JobStatus(str, Enum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def terminal(self) -> bool:
        return self in (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED)


ACTIVE = (JobStatus.QUEUED, JobStatus.RUNNING)

# Failure codes a job can end with (docs/transcoding.md has the table). Submission
# checks raise the same codes as 422s before a job exists.
ERROR_CODES = {
    "source_not_found": "the source path/URI does not exist",
    "source_empty": "the source is a zero-byte file",
    "source_unreadable": "ffmpeg cannot open the source as media (not a video, or no moov)",
    "source_corrupt": "the source is truncated or has undecodable frames",
    "source_truncated": "the source ends well before the duration its header claims",
    "no_video_stream": "the source has no video stream (audio-only or data)",
    "unknown_ladder": "no preset or ladder file by that name",
    "invalid_ladder": "the ladder file or inline ladder is malformed",
    "invalid_output": "the output name is not a safe relative name, path or URI",
    "output_not_writable": "the output location cannot be created or written",
    "storage_error": "a pyarrow.fs URI could not be opened (bad URI, credentials, network)",
    "encode_failed": "ffmpeg failed for a reason not listed above (message has its words)",
    "package_failed": "the encoded output could not be cut into CMAF segments (a bug)",
    "worker_died": "a worker died more times than FANDOM_TRANSCODE_RETRIES allows",
    "internal_error": "an unexpected error in the pool (message has details)",
}


def new_job_id() -> str:
    return uuid.uuid4().hex[:16]


@dataclass
class JobSpec:
    source: str                 # local path or pyarrow.fs URI
    output: str                 # resolved: absolute path or URI of the published ladder
    ladder: dict[str, Any]      # Ladder.to_json() of the resolved ladder
    public_path: str | None = None  # path under the media root, when served at /media/
    split: str | None = None    # override of FANDOM_TRANSCODE_SPLIT
    chunk_s: float | None = None  # override of FANDOM_TRANSCODE_CHUNK_S


@dataclass
class JobRecord:
    id: str
    spec: JobSpec
    status: JobStatus = JobStatus.QUEUED
    submitted_by: str = ""
    created_at: float = 0.0
    started_at: float | None = None
    finished_at: float | None = None
    progress: float = 0.0
    error: dict[str, str] | None = None   # {"code", "message"}
    result: dict[str, Any] | None = None  # outputs, renditions, measured rates
    runs: int = 0                          # how many times the pool started it

    def to_json(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["status"] = self.status.value
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> JobRecord:
        known = {f.name for f in dataclasses.fields(cls)}
        d = {k: v for k, v in d.items() if k in known}
        d["spec"] = JobSpec(**d["spec"])
        d["status"] = JobStatus(d["status"])
        return cls(**d)

    def public(self, base_url: str) -> dict[str, Any]:
        """The API/CLI view: timings derived, URLs absolute."""
        d = self.to_json()
        end = self.finished_at
        d["wall_s"] = round(end - self.started_at, 3) if end and self.started_at else None
        d["queued_s"] = round((self.started_at or end or 0) - self.created_at, 3) if (self.started_at or end) else None
        if self.result and self.spec.public_path is not None:
            root = f"{base_url.rstrip('/')}/media/{self.spec.public_path}"
            d["urls"] = {"master": f"{root}/{self.result['master']}", "mpd": f"{root}/{self.result['mpd']}"}
        else:
            d["urls"] = None
        return d
