"""The Ray tasks of a transcoding job: thin shells over jobs/encode.py and jobs/cmaf.py.

Every task is idempotent (scratch space per attempt, outputs overwritten whole), so
Ray may retry one whose worker died. Application errors (MediaError) are not retried:
a bad source stays bad. Encoded chunks travel between tasks as Ray objects, so an
encode and its packaging may run on different nodes.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import tempfile
import time
from dataclasses import dataclass

import ray
import redis

from cluster import keys
from cluster.errors import MediaError
from jobs import cmaf, encode, storage
from jobs import ffmpeg as ff
from jobs.ladder import Rendition
from jobs.plan import AUDIO_TASK, Chunk

REPORT_EVERY_S = 0.5
TRUNCATION_SLACK_S = 1.0  # video may legitimately end a little before the container


@dataclass(frozen=True)
class TaskConfig:
    """What every task needs from Settings (small and picklable)."""
    ffmpeg: str
    preset: str
    scratch: str
    redis_url: str
    job_id: str


class Reporter:
    """Writes this task's progress, pid and node into keys.job_tasks (throttled), and at
    the end the CPU seconds its ffmpeg children used (the job's CPU cost, for ops)."""

    def __init__(self, cfg: TaskConfig, task: str):
        self.cpu0 = _children_cpu()
        self.redis = redis.Redis.from_url(cfg.redis_url)
        self.key, self.task = keys.job_tasks(cfg.job_id), task
        self.node = ray.get_runtime_context().get_node_id()
        self.last = 0.0
        self(0.0, force=True)

    def __call__(self, fraction: float, *, force: bool = False, **extra) -> None:
        now = time.monotonic()
        if force or now - self.last >= REPORT_EVERY_S:
            self.last = now
            self.redis.hset(self.key, self.task, json.dumps(
                {"progress": round(fraction, 4), "pid": os.getpid(), "node": self.node, **extra}))

    def done(self) -> None:
        self(1.0, force=True, cpu_s=round(_children_cpu() - self.cpu0, 2))

    def close(self) -> None:
        self.redis.close()


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _workdir(cfg: TaskConfig, task: str) -> str:
    return tempfile.mkdtemp(prefix=f"{cfg.job_id}-{task}-", dir=storage.scratch_dir(cfg.scratch))


@ray.remote
def probe_source(cfg: TaskConfig, source: str) -> dict:
    storage.check_source(source)
    local = storage.local_source(source, storage.scratch_dir(cfg.scratch), cfg.job_id)
    return ff.probe(cfg.ffmpeg, local).to_json()


@ray.remote
def encode_video(cfg: TaskConfig, task: str, source: str, renditions: list[dict],
                 chunk: Chunk, expected_s: float):
    """Encode one chunk of the given renditions; returns the MP4 bytes of each, in order."""
    report = Reporter(cfg, task)
    work = _workdir(cfg, task)
    try:
        rends = [Rendition.from_json(r) for r in renditions]
        local = storage.local_source(source, storage.scratch_dir(cfg.scratch), cfg.job_id)
        outputs = [os.path.join(work, f"{r.name}.mp4") for r in rends]
        args = encode.video_chunk(cfg.ffmpeg, local, rends, outputs, start_frame=chunk.start_frame,
                                  frames=chunk.frames, preset=cfg.preset)
        reached = ff.run(args, what=f"encoding {task}", expected_s=expected_s, on_progress=report)
        if reached < expected_s - TRUNCATION_SLACK_S:
            raise MediaError(f"the source ends at {chunk.start_frame / rends[0].fps + reached:.1f} s "
                             f"but says it lasts longer; it looks truncated", code="source_truncated")
        blobs = tuple(open(p, "rb").read() for p in outputs)
        report.done()
        return blobs[0] if len(blobs) == 1 else blobs
    finally:
        report.close()
        shutil.rmtree(work, ignore_errors=True)


@ray.remote
def package_video(cfg: TaskConfig, name: str, staging: str, segment_s: int, *chunks: bytes) -> dict:
    """Stitch one rendition's chunks, cut CMAF segments into staging/<name>/, measure them."""
    report = Reporter(cfg, f"package-{name}")
    work = _workdir(cfg, f"package-{name}")
    try:
        paths = []
        for i, blob in enumerate(chunks):
            paths.append(os.path.join(work, f"chunk{i:05d}.mp4"))
            with open(paths[-1], "wb") as f:
                f.write(blob)
        with open(os.path.join(work, "chunks.txt"), "w") as f:
            f.write(encode.concat_list(paths))
        stitched = os.path.join(work, "stitched.mp4")
        ff.run(encode.stitch(cfg.ffmpeg, os.path.join(work, "chunks.txt"), stitched),
               what=f"stitching {name}")
        media = cmaf.split(stitched, name=name, target_s=segment_s,
                           write=lambda rel, data: storage.write(staging, f"{name}/{rel}", data))
        report.done()
        return media.to_json()
    finally:
        report.close()
        shutil.rmtree(work, ignore_errors=True)


@ray.remote
def audio_rendition(cfg: TaskConfig, source: str, staging: str, kbps: int, segment_s: int,
                    expected_s: float) -> dict:
    """Encode the source's audio once (never per chunk) and package it into staging/audio/."""
    report = Reporter(cfg, AUDIO_TASK)
    work = _workdir(cfg, AUDIO_TASK)
    try:
        local = storage.local_source(source, storage.scratch_dir(cfg.scratch), cfg.job_id)
        out = os.path.join(work, "audio.mp4")
        ff.run(encode.audio(cfg.ffmpeg, local, out, kbps=kbps, segment_s=segment_s),
               what="encoding audio", expected_s=expected_s, on_progress=report)
        media = cmaf.split(out, name=AUDIO_TASK, target_s=segment_s,
                           write=lambda rel, data: storage.write(staging, f"{AUDIO_TASK}/{rel}", data))
        report.done()
        return media.to_json()
    finally:
        report.close()
        shutil.rmtree(work, ignore_errors=True)
