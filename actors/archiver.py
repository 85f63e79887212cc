"""The chat archiver: a detached, named Ray actor that turns the rooms' streams into Parquet.

A thin shell: reading is actors.archive.redis_io, deciding is actors.archive.batch and
the ledger, writing is actors.archive.store. One background thread polls Redis and
flushes; Ray calls (flush, erase, compact, status, ...) run on other threads of the
same actor and take the same lock, so the dataset has exactly one writer and every
mutation is serialised — that is what makes erasure race-free against archiving.

Crash safety, by window (each has a crash test in tests/test_archiver_crash.py):
  - mid-write: only hidden temp files exist; nothing was acked; recover() deletes the
    temps and the entries come back from our pending list.
  - after some/all renames, before XACK: the entries come back and Committed drops
    exactly the offsets the dataset already has.
  - mid-compaction / mid-erasure: the journal / the erasure ledger lets recover() and
    the startup resume finish the job.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import threading
import time

import redis

from actors.archive.batch import Batch, Committed, file_specs
from actors.archive.ledger import Erasure
from actors.archive.redis_io import StreamReader, erase_user, redis_time_ms
from actors.archive.store import Store
from cluster.errors import InvalidInput
from cluster.settings import ON_HEAD_NODE, RAY_NAMESPACE, Settings

log = logging.getLogger("fandom.archiver")

ACTOR_NAME = "archiver"
POLL_BLOCK_S = 1.0    # longest blocking read: bounds how late a new room or stop() is noticed
BACKPRESSURE = 4      # stop reading when this many batches are waiting (flushes failing)


class Archiver:
    def __init__(self, env: dict[str, str]):
        self.settings = s = Settings.from_env(env)
        self.redis = redis.Redis.from_url(s.redis_url)
        self.store = Store(s.data_dir)
        self.reader = StreamReader(self.redis, count=min(1000, s.archive_batch_rows))
        self.committed = Committed(self.store.max_offsets, self.store.offsets_in)
        self.batch = Batch()
        self.ledger = None
        self.lock = threading.RLock()      # the dataset and the batch: one writer at a time
        # Held around poll + absorb, so an explicit flush() sees every entry the loop has
        # taken from Redis (order: reading, then lock — never the other way round).
        self.reading = threading.Lock()
        self.stats = {"rows_written": 0, "files_written": 0, "duplicates_dropped": 0,
                      "erased_dropped": 0, "unreadable_acked": 0, "flushes": 0, "errors": 0}
        self.recovery: dict = {}
        self.last_error: str | None = None
        self._armed: set[str] = set()
        self._paused_at: str | None = None
        self._release = threading.Event()
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._main, name="archiver", daemon=True)
        self._thread.start()

    # --- Ray-callable -----------------------------------------------------------------

    def status(self) -> dict:
        try:  # no lock: status must answer while the writer holds it (or is paused)
            unacked = self.batch.pending
        except RuntimeError:  # the loop changed the batch under us
            unacked = -1
        return {"ready": self._ready.is_set(), "pid": os.getpid(), "paused_at": self._paused_at,
                "buffered_rows": len(self.batch.rows), "unacked": unacked,
                "rooms": sorted(list(self.reader.grouped)), "recovery": self.recovery,
                "last_error": self.last_error, **self.stats}

    def flush(self) -> int:
        """Write and acknowledge everything read so far; returns rows written."""
        self._ready.wait()
        with self.reading, self.lock:
            while items := self.reader.poll(block_ms=0):
                self._absorb(items)
            return self._flush()

    def erase(self, user: str) -> dict:
        """GDPR erasure of ``user``'s messages up to now, everywhere; returns what went."""
        if not isinstance(user, str) or not 0 < len(user) <= 64:
            raise InvalidInput("user must be 1-64 characters", code="invalid_user")
        self._ready.wait()
        with self.lock:
            erasure = self.ledger.start(user, redis_time_ms(self.redis))
            self.store.save_ledger(self.ledger)  # durable intent first: a crash resumes it
            return self._erase(erasure)

    def compact(self) -> dict:
        self._ready.wait()
        with self.lock:
            return self.store.compact(self.settings.archive_compact_min_files, self._checkpoint)

    def apply_retention(self, today: str | None = None) -> list[str]:
        """Delete partitions past FANDOM_ARCHIVE_RETENTION_DAYS (``today``: ISO date, for tests)."""
        self._ready.wait()
        day = dt.date.fromisoformat(today) if today else dt.datetime.now(dt.UTC).date()
        with self.lock:
            return self.store.retention(self.settings.archive_retention_days, day)

    def pause_at(self, point: str) -> None:
        """Block the next time the writer reaches ``point`` (crash tests kill us there)."""
        self._armed.add(point)

    def stop(self) -> None:
        self._stop.set()
        self._release.set()
        self._thread.join(timeout=10)

    # --- the loop -----------------------------------------------------------------------

    def _main(self) -> None:
        while not self._stop.is_set() and not self._ready.is_set():
            try:
                self._start()
            except Exception as e:  # e.g. Redis not up yet: keep trying, visibly
                self._failed(e)
        s = self.settings
        next_compact = time.monotonic() + s.archive_compact_interval_s
        next_retention = time.monotonic() + 3600  # _start() just applied it
        while not self._stop.is_set():
            try:
                if self.batch.pending < BACKPRESSURE * s.archive_batch_rows:
                    with self.reading:
                        self._absorb(self.reader.poll(block_ms=self._block_ms()))
                else:
                    self._stop.wait(POLL_BLOCK_S)
                now = time.monotonic()
                with self.lock:
                    if self.batch.due(now, s.archive_batch_rows, s.archive_flush_s):
                        self._flush()
                    if now >= next_compact:
                        self.store.compact(s.archive_compact_min_files, self._checkpoint)
                        next_compact = now + s.archive_compact_interval_s
                    if now >= next_retention:
                        self.apply_retention()
                        next_retention = now + 3600
            except Exception as e:
                self._failed(e)

    def _start(self) -> None:
        with self.lock:
            self.recovery = self.store.recover()
            self.ledger = self.store.load_ledger()
            for erasure in self.ledger.unfinished():
                log.warning("resuming an interrupted erasure")
                self._erase(erasure)
            self._ready.set()
            self.apply_retention()

    def _failed(self, e: Exception) -> None:
        log.exception("archiver step failed; retrying")
        self.stats["errors"] += 1
        self.last_error = f"{type(e).__name__}: {e}"
        self._stop.wait(1.0)

    def _block_ms(self) -> int:
        if self.batch.started_at is None:
            return int(POLL_BLOCK_S * 1000)
        left = self.batch.started_at + self.settings.archive_flush_s - time.monotonic()
        return int(max(0.001, min(POLL_BLOCK_S, left)) * 1000)

    def _absorb(self, items) -> None:
        now = time.monotonic()
        with self.lock:
            for room, entry_id, entry in items:
                self.batch.add(room, entry_id, entry, now)
                if entry is None:
                    self.stats["unreadable_acked"] += 1

    def _flush(self) -> int:
        batch = self.batch
        if not batch.pending:
            return 0
        fresh = self.committed.fresh(batch.rows)
        rows, suppressed = self.ledger.suppress(fresh)
        paths = self.store.commit(file_specs(rows), self._checkpoint)
        self.committed.committed(rows)
        self._checkpoint("flush_before_ack")
        self.reader.ack(batch.acks)
        self.batch = Batch()  # only now: a failure above keeps the batch for the next try
        st = self.stats
        st["rows_written"] += len(rows)
        st["files_written"] += len(paths)
        st["duplicates_dropped"] += len(batch.rows) - len(fresh)
        st["erased_dropped"] += suppressed
        st["flushes"] += 1
        return len(rows)

    def _erase(self, erasure: Erasure) -> dict:
        user, before = erasure.user, erasure.before_ms
        in_redis = erase_user(self.redis, user, before)
        buffered = self.batch.drop_user(user, before)
        in_dataset = self.store.erase(user, before, self._checkpoint)
        report = {"before_ms": before, "redis_rows": in_redis["rows"],
                  "dedup_keys": in_redis["dedup_keys"], "buffered_rows": buffered,
                  "dataset_rows": in_dataset["rows"], "files_rewritten": in_dataset["files_rewritten"],
                  "files_deleted": in_dataset["files_deleted"]}
        self.ledger.finish(erasure, report)
        self.store.save_ledger(self.ledger)
        return {"user": user, **report}

    def _checkpoint(self, point: str) -> None:
        if point in self._armed:
            self._armed.discard(point)
            self._paused_at = point
            self._release.wait(timeout=600)
            self._paused_at = None


def start_archiver(settings: Settings, *, name: str = ACTOR_NAME):
    """Get or create the detached archiver actor (idempotent; `fandom up` calls it)."""
    import ray

    if "://" not in settings.data_dir:  # a relative dir means the caller's, not the worker's cwd
        settings = settings.replace(data_dir=os.path.abspath(settings.data_dir))
    return ray.remote(Archiver).options(
        name=name, namespace=RAY_NAMESPACE, lifetime="detached", get_if_exists=True,
        max_restarts=-1,       # a crash restarts it; recovery makes that safe
        max_task_retries=0,    # callers see a failed erase/flush and may retry: both are idempotent
        max_concurrency=8,     # status() must answer while the writer is busy or paused
        num_cpus=0,
        resources=ON_HEAD_NODE,
    ).remote(settings.to_env(secrets=False))


def get_archiver(name: str = ACTOR_NAME):
    """The running archiver's handle; raises Unavailable when it is not running."""
    import ray

    from cluster.errors import Unavailable

    try:
        return ray.get_actor(name, namespace=RAY_NAMESPACE)
    except ValueError:
        raise Unavailable("the archiver is not running (start fandom with `fandom up`)") from None


def wait_ready(handle, timeout_s: float = 60.0) -> dict:
    """Poll status() until the archiver finished its startup recovery."""
    import ray

    deadline = time.monotonic() + timeout_s
    while True:
        status = ray.get(handle.status.remote(), timeout=timeout_s)
        if status["ready"]:
            return status
        if time.monotonic() > deadline:
            from cluster.errors import Unavailable

            raise Unavailable(f"archiver not ready after {timeout_s}s: {status['last_error']}")
        time.sleep(0.1)
