"""The transcoding pool: one detached, named Ray actor that runs jobs as Ray tasks.

The API replica only writes a queued record to Redis and pokes this actor, so a job
never dies with the HTTP replica. The actor is detached and restartable; when it
(re)starts it picks up every job Redis still lists as queued or running and runs it
again from the start (tasks are idempotent, output is staged), so a restart loses none.

One job: probe -> encode tasks (chunks x rungs) -> one packaging task per rung (+ audio)
-> playlists -> publish. Progress comes from what the tasks write to Redis.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from typing import Any

import ray
from ray.exceptions import RayError, RayTaskError, TaskCancelledError, WorkerCrashedError

from cluster.errors import FandomError, MediaError
from cluster.redis_conn import async_client
from cluster.settings import ON_HEAD_NODE, RAY_NAMESPACE, Settings
from jobs import outputs, plan, progress, storage
from jobs import ffmpeg as ff
from jobs.cmaf import Media
from jobs.ladder import parse_ladder, renditions
from jobs.model import JobRecord, JobStatus
from jobs.probe import SourceInfo, require_video
from jobs.store import JobStore
from jobs.tasks import TaskConfig, audio_rendition, encode_video, package_video, probe_source

log = logging.getLogger("fandom.jobs")

POOL_NAME = "fandom-transcode-pool"
# Packaging (a stream copy + file writes) and audio are light: a quarter CPU each so
# they never hold back an encode on a small node.
LIGHT_CPUS = 0.25
PROGRESS_TICK_S = 1.0
CANCEL_SETTLE_S = 30.0


def get_pool(settings: Settings):
    """The pool actor, created on first use (idempotent; safe from any process)."""
    return TranscodePool.options(
        name=POOL_NAME, namespace=RAY_NAMESPACE, lifetime="detached", get_if_exists=True,
        resources=ON_HEAD_NODE,
    ).remote(settings.to_env(secrets=False))


def start(settings: Settings) -> None:
    """`fandom up` service hook (cluster/up.py SERVICES): create the pool, resume jobs."""
    ray.get(get_pool(settings).ready.remote())


@ray.remote(num_cpus=0, max_restarts=-1, max_concurrency=1000)
class TranscodePool:
    def __init__(self, env: dict[str, str]):
        self.settings = Settings.from_env({**os.environ, **env})
        self.ffmpeg = ff.ffmpeg_binary(self.settings.ffmpeg)
        self.store = JobStore(async_client(self.settings.redis_url, name="fandom-transcode-pool"),
                              ttl_s=self.settings.job_ttl_s)
        self.slots: asyncio.Semaphore | None = None
        self.jobs: dict[str, asyncio.Task] = {}
        self.publishing: set[str] = set()
        # After a restart nobody may call us for a while: queue our own ready() so the
        # jobs a previous incarnation left behind resume right away.
        ray.get_runtime_context().current_actor.ready.remote()

    async def ready(self) -> bool:
        """Resume jobs a previous incarnation left unfinished (first call only)."""
        if self.slots is None:
            self.slots = asyncio.Semaphore(self.settings.transcode_max_jobs)
            for job_id in reversed(await self.store.active_ids()):  # oldest first
                self._schedule(job_id)
        return True

    async def submit(self, job_id: str) -> None:
        await self.ready()
        self._schedule(job_id)

    async def cancel(self, job_id: str) -> dict[str, Any] | None:
        """Stop a job's tasks, drop its staging, mark it cancelled; returns its record."""
        await self.ready()
        task = self.jobs.get(job_id)
        if task is not None and job_id in self.publishing:
            await asyncio.gather(task, return_exceptions=True)  # too late: let it finish
        elif task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        else:
            await self.store.update(job_id, {"status": JobStatus.CANCELLED, "finished_at": time.time()},
                                    allowed=(JobStatus.QUEUED, JobStatus.RUNNING))
        rec = await self.store.get(job_id)
        return rec.to_json() if rec else None

    async def active(self) -> list[str]:
        return sorted(self.jobs)

    def _schedule(self, job_id: str) -> None:
        if job_id in self.jobs:
            return
        task = asyncio.get_running_loop().create_task(self._run(job_id))
        self.jobs[job_id] = task
        task.add_done_callback(lambda _: self.jobs.pop(job_id, None))

    async def _run(self, job_id: str) -> None:
        assert self.slots is not None
        refs: list[ray.ObjectRef] = []
        staging: str | None = None
        try:
            async with self.slots:
                rec = await self.store.get(job_id)
                if rec is None or rec.status.terminal:
                    return
                started = time.time()
                if not await self.store.update(job_id, {
                        "status": JobStatus.RUNNING, "started_at": started, "progress": 0.0,
                        "runs": rec.runs + 1, "error": None},
                        allowed=(JobStatus.QUEUED, JobStatus.RUNNING)):
                    return
                run = rec.runs + 1
                await self.store.reset_tasks(job_id)
                # A run of our own previous incarnation may have left staging (and even a
                # straggling task writing to it): each run stages under its own name.
                for old in range(1, run):
                    await asyncio.to_thread(storage.discard, storage.staging_location(
                        rec.spec.output, f"{job_id}-r{old}"))
                staging = await asyncio.to_thread(storage.prepare_staging, rec.spec.output,
                                                  f"{job_id}-r{run}")
                result = await self._execute(rec, staging, refs)
                # From here on a cancel waits for the end: a half-done rename must never
                # be followed by deleting what it moved.
                self.publishing.add(job_id)
                await asyncio.to_thread(storage.publish, staging, rec.spec.output)
                staging = None
                await self.store.update(job_id, {
                    "status": JobStatus.SUCCEEDED, "finished_at": time.time(), "progress": 1.0,
                    "result": result}, allowed=(JobStatus.RUNNING,))
        except asyncio.CancelledError:
            await self._abort(job_id, refs, staging, JobStatus.CANCELLED, None)
            raise
        except Exception as e:  # noqa: BLE001 - every failure must end in a record
            error = _as_error(e)
            log.warning("job %s failed: %s: %s", job_id, error.code, error.message)
            await self._abort(job_id, refs, staging, JobStatus.FAILED, error.to_json())
        finally:
            self.publishing.discard(job_id)

    async def _abort(self, job_id: str, refs: list, staging: str | None, status: JobStatus,
                     error: dict | None) -> None:
        for ref in refs:
            ray.cancel(ref, recursive=True)  # ffmpeg is killed by the task's own handler
        if refs:
            # Let cancelled tasks settle first, or a packaging task caught mid-write could
            # recreate the staging prefix right after we deleted it.
            await asyncio.wait([asyncio.wrap_future(r.future()) for r in refs], timeout=CANCEL_SETTLE_S)
        if staging:
            await asyncio.to_thread(storage.discard, staging)
        await self.store.update(job_id, {"status": status, "finished_at": time.time(), "error": error},
                                allowed=(JobStatus.QUEUED, JobStatus.RUNNING))

    async def _execute(self, rec: JobRecord, staging: str, refs: list) -> dict:
        s, spec = self.settings, rec.spec
        cfg = TaskConfig(self.ffmpeg, s.transcode_preset, s.transcode_scratch_dir, s.redis_url, rec.id)
        ladder = parse_ladder(spec.ladder, name=spec.ladder.get("name", "custom"))
        probe_ref = probe_source.options(num_cpus=LIGHT_CPUS, max_retries=s.transcode_retries,
                                         name=f"probe-{rec.id}").remote(cfg, spec.source)
        refs.append(probe_ref)
        info = SourceInfo.from_json(await probe_ref)
        rends = renditions(ladder, require_video(info, os.path.basename(spec.source)))
        fps = rends[0].fps
        segment_frames = rends[0].gop_frames * (ladder.segment_s // ladder.keyframe_s)
        chunk_s = s.transcode_chunk_s if spec.chunk_s is None else spec.chunk_s
        chunk_list = plan.chunks(info.duration_s, fps, segment_frames, chunk_s)
        tasks = plan.encode_tasks(rends, chunk_list, spec.split or s.transcode_split, info.duration_s)
        weights = plan.weights(tasks, rends, info.has_audio)
        by_name = {r.name: r for r in rends}

        chunk_refs: dict[str, list] = {r.name: [] for r in rends}
        for t in tasks:
            out = encode_video.options(
                num_returns=len(t.renditions), num_cpus=s.transcode_encode_cpus,
                max_retries=s.transcode_retries, name=f"{t.name}-{rec.id}",
            ).remote(cfg, t.name, spec.source, [by_name[n].to_json() for n in t.renditions],
                     t.chunk, t.chunk.seconds(fps, info.duration_s))
            out = [out] if len(t.renditions) == 1 else list(out)
            refs.extend(out)
            for name, ref in zip(t.renditions, out):
                chunk_refs[name].append(ref)
        light = {"num_cpus": LIGHT_CPUS, "max_retries": s.transcode_retries}
        finals = {r.name: package_video.options(**light, name=f"package-{r.name}-{rec.id}").remote(
            cfg, r.name, staging, ladder.segment_s, *chunk_refs[r.name]) for r in rends}
        if info.has_audio:
            finals[plan.AUDIO_TASK] = audio_rendition.options(**light, name=f"audio-{rec.id}").remote(
                cfg, spec.source, staging, ladder.audio_kbps, ladder.segment_s, info.duration_s)
        refs.extend(finals.values())
        done = await self._wait(rec.id, finals, weights)

        videos = [(Media.from_json(done[r.name]), r) for r in rends]
        audio = Media.from_json(done[plan.AUDIO_TASK]) if info.has_audio else None
        summary = outputs.summary(videos, audio, info.to_json())
        cpu = sum(r.get("cpu_s", 0.0) for r in (await self.store.task_reports(rec.id)).values())
        summary["plan"] = {"chunks": len(chunk_list), "encode_tasks": [t.name for t in tasks],
                           "cpu_s": round(cpu, 2)}
        files = outputs.manifests(videos, audio, summary)
        await asyncio.to_thread(lambda: [storage.write(staging, p, t.encode()) for p, t in files.items()])
        return summary

    async def _wait(self, job_id: str, finals: dict[str, ray.ObjectRef], weights: dict) -> dict:
        """Await every final task, refreshing the record's progress; first failure raises."""
        futures = {asyncio.wrap_future(ref.future()): name for name, ref in finals.items()}
        results: dict[str, Any] = {}
        pending = set(futures)
        last = -1.0
        while pending:
            done, pending = await asyncio.wait(pending, timeout=PROGRESS_TICK_S,
                                               return_when=asyncio.FIRST_EXCEPTION)
            for fut in done:
                results[futures[fut]] = fut.result()  # raises the task's error, if any
            reports = await self.store.task_reports(job_id)
            frac = {name: r.get("progress", 0.0) for name, r in reports.items()}
            now = round(min(0.99, progress.overall(weights, frac)), 3)
            if now > last:
                last = now
                await self.store.update(job_id, {"progress": now}, allowed=(JobStatus.RUNNING,))
        return results


def _as_error(e: BaseException) -> FandomError:
    """The FandomError a failed job reports, unwrapping Ray's task error envelope."""
    if isinstance(e, RayTaskError):
        cause = e.cause if e.cause is not None else e
        if isinstance(cause, FandomError):
            return cause
        if isinstance(cause, (WorkerCrashedError, TaskCancelledError)):
            e = cause
        else:
            return MediaError(f"{type(cause).__name__}: {cause}", code="internal_error", status=500)
    if isinstance(e, FandomError):
        return e
    if isinstance(e, WorkerCrashedError):
        return MediaError("a transcoding worker died more often than FANDOM_TRANSCODE_RETRIES "
                          "allows (out of memory? node lost?)", code="worker_died", status=500)
    if isinstance(e, RayError):
        return MediaError(f"Ray failed the job: {e}", code="internal_error", status=500)
    return MediaError(f"{type(e).__name__}: {e}", code="internal_error", status=500)
