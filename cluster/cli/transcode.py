"""`fandom transcode SRC --out DIR`: one job on the cluster (a local one by default).

Joins RAY_ADDRESS if set (then FANDOM_REDIS_URL must be too), else starts a local Ray
and an embedded Redis for the duration of the command.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import Callable

from cluster.errors import FandomError
from cluster.settings import Settings
from jobs.model import JobRecord

POLL_S = 0.5


def register(sub) -> None:
    p = sub.add_parser("transcode", help="transcode a video into an HLS + DASH CMAF ladder")
    p.add_argument("source", help="video file (or pyarrow.fs URI such as s3://bucket/show.mp4)")
    p.add_argument("--out", required=True, help="output directory (or URI); replaced if it exists")
    p.add_argument("--ladder", help="preset name (default, apple), ladder file (.yaml/.json), "
                   "or a name in FANDOM_LADDERS_DIR")
    p.add_argument("--split", choices=["chunk", "rendition"],
                   help="encode task granularity (default FANDOM_TRANSCODE_SPLIT)")
    p.add_argument("--chunk-s", type=float,
                   help="chunk length in seconds (default FANDOM_TRANSCODE_CHUNK_S; 0: no chunks)")
    p.add_argument("--json", action="store_true", help="print one JSON object with the result")
    p.set_defaults(func=run)


def run(args) -> int:
    settings = Settings.from_env()
    out = args.out if "://" in args.out else os.path.abspath(args.out)
    bar = _bar if sys.stderr.isatty() and not args.json else None
    rec = transcode(settings, args.source, out, ladder=args.ladder, split=args.split,
                    chunk_s=args.chunk_s, on_progress=bar)
    if bar:
        print(file=sys.stderr)
    view = summary(rec)
    if args.json:
        print(json.dumps(view))
    elif rec.status.value == "succeeded":
        print(f"succeeded in {view['wall_s']} s\n  HLS   {view['master']}\n  DASH  {view['mpd']}")
        for r in view["renditions"]:
            print(f"  {r['name']:>6} {r['width']}x{r['height']}@{r['fps']}  "
                  f"avg {r['average_bps'] / 1000:.0f} kb/s  peak {r['peak_bps'] / 1000:.0f} kb/s")
    if rec.status.value != "succeeded":
        err = rec.error or {"code": rec.status.value, "message": f"job {rec.status.value}"}
        print(f"error[{err['code']}]: {err['message']}", file=sys.stderr)
        return 1
    return 0


def transcode(settings: Settings, source: str, out: str, *, ladder: str | dict | None = None,
              split: str | None = None, chunk_s: float | None = None,
              on_progress: Callable[[JobRecord], None] | None = None) -> JobRecord:
    """Run one job to its end on the cluster; returns the final record. Shared with bench/."""
    from cluster.up import resolve_redis, start_ray

    settings, embedded = resolve_redis(settings)
    started = False
    try:
        started = start_ray(settings)
        return asyncio.run(_run(settings, source, out, ladder, split, chunk_s, on_progress))
    finally:
        if started:
            import ray

            ray.shutdown()
        if embedded is not None:
            embedded.stop()


async def _run(settings, source, out, ladder, split, chunk_s, on_progress) -> JobRecord:
    from cluster.redis_conn import async_client
    from jobs import submit as submitting
    from jobs.store import JobStore

    store = JobStore(async_client(settings.redis_url, name="fandom-cli"), ttl_s=settings.job_ttl_s)
    try:
        record = submitting.prepare(settings, source=source, output=out, ladder=ladder, split=split,
                                    chunk_s=chunk_s,
                                    user=os.environ.get("USER", "cli"))
        await submitting.submit(settings, store, record)
        while True:
            rec = await store.get(record.id)
            if rec is None:
                raise FandomError(f"job {record.id} vanished from Redis", code="job_not_found")
            if on_progress:
                on_progress(rec)
            if rec.status.terminal:
                return rec
            await asyncio.sleep(POLL_S)
    finally:
        await store.redis.aclose()


def summary(rec: JobRecord) -> dict:
    """The --json object: status, playlist paths, measured renditions, wall seconds."""
    res = rec.result or {}
    out = rec.spec.output
    join = (lambda name: f"{out.rstrip('/')}/{name}") if "://" in out else (lambda name: os.path.join(out, name))
    wall = rec.finished_at - rec.started_at if rec.finished_at and rec.started_at else None
    return {
        "id": rec.id, "status": rec.status.value, "error": rec.error,
        "master": join(res["master"]) if res else None, "mpd": join(res["mpd"]) if res else None,
        "renditions": res.get("renditions", []), "audio": res.get("audio"),
        "wall_s": round(wall, 3) if wall is not None else None,
    }


def _bar(rec: JobRecord) -> None:
    width = 30
    filled = int(rec.progress * width)
    print(f"\r[{'#' * filled}{'.' * (width - filled)}] {rec.progress * 100:5.1f}% {rec.status.value:<9}",
          end="", file=sys.stderr, flush=True)
