"""The one typed settings object, read from ``FANDOM_*`` environment variables.

Every default lets ``fandom up`` run on a bare laptop. Defaults that are unsafe in
production (the JWT secret) are marked loudly and reported by ``Settings.warnings``.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from cluster.errors import ConfigError

# The Ray namespace of every named fandom actor (pool, applier, archiver): one name,
# so a driver, a Serve replica or a test finds them the same way.
RAY_NAMESPACE = "fandom"

# Where those detached singletons run: the head node. They need no CPU (num_cpus=0),
# and a node whose actors hold no resources counts as idle to Ray's autoscaler, which
# releases it, killing them; placed by default they could land on a worker node the
# autoscaler brought up for chat or transcoding. Seen: the test cluster released a
# fake worker node under the archiver mid-test ("the actor was restarted"). The
# archiver's local data dir also has to stay on one machine.
ON_HEAD_NODE = {"node:__internal_head__": 0.001}

# Loudly marked: anyone who can read this file can mint tokens for a cluster that
# kept the default. `fandom up` warns on start; production must set FANDOM_JWT_SECRET.
DEV_JWT_SECRET = "fandom-DEV-ONLY-secret-DO-NOT-USE-IN-PRODUCTION"


def _env(name: str, default: Any, help: str, secret: bool = False) -> Any:
    return field(default=default, metadata={"env": name, "help": help, "secret": secret})


@dataclass(frozen=True)
class Settings:
    """Configuration of every fandom process; see docs/configuration.md."""

    # --- where things are -------------------------------------------------------
    redis_url: str = _env(
        "FANDOM_REDIS_URL", "",
        "Redis to use, e.g. redis://127.0.0.1:6379/0. Empty: `fandom up` starts an "
        "embedded single-node server (redis-server on PATH, else fakeredis).")
    jwt_secret: str = _env(
        "FANDOM_JWT_SECRET", DEV_JWT_SECRET,
        "HS256 secret for fan and ops tokens. The default is for development only. "
        "Never written to the Serve config: every node must have it in its environment.",
        secret=True)
    data_dir: str = _env(
        "FANDOM_DATA_DIR", "./fandom-data",
        "Local directory or pyarrow.fs URI for archives, media outputs and run files.")
    ray_address: str = _env(
        "RAY_ADDRESS", "",
        "Ray cluster to join (e.g. 10.0.0.5:6379 or auto). Empty: start a local one.")
    host: str = _env("FANDOM_HOST", "0.0.0.0", "Interface the HTTP and WebSocket ports bind to.")
    http_port: int = _env("FANDOM_HTTP_PORT", 8000, "Ray Serve HTTP port (ops API, health, media).")
    ws_port: int = _env(
        "FANDOM_WS_PORT", 8765,
        "Chat WebSocket port. Every chat replica on a node shares it (SO_REUSEPORT).")
    public_url: str = _env(
        "FANDOM_PUBLIC_URL", "",
        "Base URL clients use for HTTP (e.g. https://fans.example.com); shown in job "
        "output URLs. Empty: http://127.0.0.1:<http_port>.")

    # --- chat tier --------------------------------------------------------------
    chat_replicas: int = _env(
        "FANDOM_CHAT_REPLICAS", 2, "Chat replicas to start with (the floor when autoscaling).")
    chat_max_replicas: int = _env(
        "FANDOM_CHAT_MAX_REPLICAS", 8, "Upper bound for chat replica autoscaling.")
    chat_replica_cpus: float = _env(
        "FANDOM_CHAT_REPLICA_CPUS", 0.25, "Logical CPUs Ray reserves per chat replica.")
    fans_per_replica: int = _env(
        "FANDOM_FANS_PER_REPLICA", 25_000,
        "Connections one chat replica is sized for; autoscaling targets this. Keep it "
        "~1000 below the replica process's RLIMIT_NOFILE hard limit (docs/operations.md).")
    history_len: int = _env(
        "FANDOM_HISTORY_LEN", 10_000, "Messages kept per room for recovery (at least).")
    dedup_ttl_s: int = _env(
        "FANDOM_DEDUP_TTL_S", 300, "How long a client message id is remembered (seconds).")
    tick_ms: int = _env(
        "FANDOM_TICK_MS", 75, "Rest between a room's write passes: what is accepted meanwhile goes out together.")
    max_text_len: int = _env("FANDOM_MAX_TEXT_LEN", 1000, "Longest chat text, in characters.")
    max_frame_bytes: int = _env(
        "FANDOM_MAX_FRAME_BYTES", 8192, "Largest client frame; bigger closes with 4009.")
    rate_per_s: float = _env(
        "FANDOM_RATE_PER_S", 10.0, "Sustained client frames per second per connection.")
    rate_burst: int = _env("FANDOM_RATE_BURST", 20, "Token-bucket burst per connection.")
    max_rooms: int = _env("FANDOM_MAX_ROOMS", 16, "Rooms one connection may join at once.")
    max_buffer_bytes: int = _env(
        "FANDOM_MAX_BUFFER_BYTES", 1 << 20,
        "Unsent bytes a connection may owe before it is dropped as a slow consumer (4010).")
    presence_interval_s: float = _env(
        "FANDOM_PRESENCE_INTERVAL_S", 5.0, "How often presence counts are refreshed and sent.")
    ping_interval_s: float = _env(
        "FANDOM_PING_INTERVAL_S", 30.0,
        "WebSocket keepalive: a connection idle this long is pinged; one that answers "
        "nothing within two more intervals is closed with 4011.")
    drain_timeout_s: float = _env(
        "FANDOM_DRAIN_TIMEOUT_S", 10.0,
        "On replica shutdown, how long fans get (close 1012) before sockets are cut.")

    # --- transcoding job pool (jobs/, serve/jobs_routes.py, docs/transcoding.md) ----
    media_dir: str = _env(
        "FANDOM_MEDIA_DIR", "",
        "Where ladders published under a plain name go, served at /media/. Empty: "
        "<FANDOM_DATA_DIR>/media. A local directory (the API serves only local files).")
    ladders_dir: str = _env(
        "FANDOM_LADDERS_DIR", "",
        "Directory of custom ladder files (<name>.yaml, .yml or .json) usable by name. "
        "Empty: <FANDOM_DATA_DIR>/ladders.")
    ffmpeg: str = _env(
        "FANDOM_FFMPEG", "",
        "ffmpeg binary. Empty: `ffmpeg` on PATH, else the one in the imageio-ffmpeg wheel.")
    transcode_preset: str = _env(
        "FANDOM_TRANSCODE_PRESET", "veryfast", "libx264 speed preset of every rendition.")
    transcode_chunk_s: float = _env(
        "FANDOM_TRANSCODE_CHUNK_S", 60.0,
        "Sources longer than this are cut into GOP-aligned chunks of about this many "
        "seconds, encoded in parallel and stitched. 0: never chunk.")
    transcode_split: str = _env(
        "FANDOM_TRANSCODE_SPLIT", "chunk",
        "Encode task granularity: 'chunk' (one task per time chunk encodes every rung "
        "from one decode) or 'rendition' (one task per rung per chunk; decodes the "
        "source once per rung, more parallelism across nodes).")
    transcode_max_jobs: int = _env(
        "FANDOM_TRANSCODE_MAX_JOBS", 2, "Jobs the pool runs at once; later ones wait as queued.")
    transcode_encode_cpus: float = _env(
        "FANDOM_TRANSCODE_ENCODE_CPUS", 1.0,
        "Logical CPUs Ray reserves per encode task (ffmpeg itself uses every core it gets).")
    transcode_retries: int = _env(
        "FANDOM_TRANSCODE_RETRIES", 3, "Ray retries of a transcoding task whose worker died.")
    transcode_scratch_dir: str = _env(
        "FANDOM_TRANSCODE_SCRATCH_DIR", "",
        "Node-local scratch space for intermediate files. Empty: the system temp dir.")
    job_ttl_s: int = _env(
        "FANDOM_JOB_TTL_S", 30 * 86400, "How long finished job records are kept in Redis.")

    # --- scheduled capacity (issue 5: cluster/capacity.py, actors/capacity_applier.py) ---
    capacity_lead_s: float = _env(
        "FANDOM_CAPACITY_LEAD_S", 1800.0,
        "Seconds before a concert starts that its capacity is requested (cloud nodes "
        "take minutes to boot; fans arrive early).")
    capacity_hold_s: float = _env(
        "FANDOM_CAPACITY_HOLD_S", 900.0,
        "Seconds after a concert ends that its capacity is kept (encores, fans lingering).")
    capacity_headroom: float = _env(
        "FANDOM_CAPACITY_HEADROOM", 1.25,
        "Multiplier on expected_audience when sizing chat replicas (>= 1).")
    capacity_cpus_per_ladder: float = _env(
        "FANDOM_CAPACITY_CPUS_PER_LADDER", 4.0,
        "CPUs one live transcoding ladder needs; one bundle per ladder is requested.")
    capacity_chat_resource: str = _env(
        "FANDOM_CAPACITY_CHAT_RESOURCE", "fandom_chat",
        "Custom Ray resource that chat node types carry (ray-cluster.yaml); chat bundles "
        "ask for 1 of it so the autoscaler launches chat nodes.")
    capacity_transcode_resource: str = _env(
        "FANDOM_CAPACITY_TRANSCODE_RESOURCE", "fandom_transcode",
        "Custom Ray resource that transcoding node types carry; one per live ladder.")
    capacity_region: str = _env(
        "FANDOM_CAPACITY_REGION", "",
        "Plan only concerts of this region (plus those without one). Empty: all concerts.")
    capacity_tick_s: float = _env(
        "FANDOM_CAPACITY_TICK_S", 5.0,
        "How often the capacity applier re-reads the calendar and re-plans (seconds).")
    capacity_clock: str = _env(
        "FANDOM_CAPACITY_CLOCK", "system",
        "The applier's clock: 'system', or 'redis' to read the time from the Redis key "
        "capacity:{plan}:clock (rehearsals and tests; never in production).")
    chat_downscale_delay_s: float = _env(
        "FANDOM_CHAT_DOWNSCALE_DELAY_S", 600.0,
        "Chat replicas are removed only after connections stayed below their count this "
        "long (removing a replica cuts its sockets). Also how long after a concert's "
        "hold ends before its extra replicas (and then nodes) go.")

    # --- chat archive and analytics (issue 6: actors/archiver.py, jobs/analytics.py) ---
    archive_flush_s: float = _env(
        "FANDOM_ARCHIVE_FLUSH_S", 30.0,
        "Longest time an archived message waits in memory before it is written to "
        "Parquet: the archive trails live chat by about this much.")
    archive_batch_rows: int = _env(
        "FANDOM_ARCHIVE_BATCH_ROWS", 50_000, "Rows that trigger a flush before FANDOM_ARCHIVE_FLUSH_S.")
    archive_compact_min_files: int = _env(
        "FANDOM_ARCHIVE_COMPACT_MIN_FILES", 8,
        "Compaction merges a partition's files once it has at least this many.")
    archive_compact_interval_s: float = _env(
        "FANDOM_ARCHIVE_COMPACT_INTERVAL_S", 600.0, "How often the archiver looks for partitions to compact.")
    archive_retention_days: int = _env(
        "FANDOM_ARCHIVE_RETENTION_DAYS", 0,
        "Delete archive partitions whose UTC date is more than this many days old. 0: keep forever.")

    def __post_init__(self) -> None:
        problems = []
        for name in ("http_port", "ws_port"):
            if not 0 <= getattr(self, name) <= 65535:
                problems.append(f"{_name(name)} must be a port number 0-65535")
        for name in ("chat_replicas", "history_len", "max_text_len", "max_frame_bytes",
                     "rate_burst", "max_rooms", "fans_per_replica", "tick_ms"):
            if getattr(self, name) < 1:
                problems.append(f"{_name(name)} must be at least 1")
        if self.chat_max_replicas < self.chat_replicas:
            problems.append("FANDOM_CHAT_MAX_REPLICAS must be >= FANDOM_CHAT_REPLICAS")
        if self.dedup_ttl_s < 300:
            problems.append("FANDOM_DEDUP_TTL_S must be at least 300 (the protocol promises 5 min)")
        if self.rate_per_s <= 0:
            problems.append("FANDOM_RATE_PER_S must be positive")
        if self.transcode_split not in ("chunk", "rendition"):
            problems.append("FANDOM_TRANSCODE_SPLIT must be 'chunk' or 'rendition'")
        if self.transcode_chunk_s < 0:
            problems.append("FANDOM_TRANSCODE_CHUNK_S must be >= 0 (0 disables chunking)")
        if self.transcode_max_jobs < 1 or self.transcode_retries < 0:
            problems.append("FANDOM_TRANSCODE_MAX_JOBS must be >= 1 and FANDOM_TRANSCODE_RETRIES >= 0")
        problems += self._capacity_problems()
        problems += self._archive_problems()
        if problems:
            raise ConfigError("; ".join(problems))

    def _archive_problems(self) -> list[str]:
        out = []
        if self.archive_flush_s <= 0 or self.archive_compact_interval_s <= 0:
            out.append("FANDOM_ARCHIVE_FLUSH_S and FANDOM_ARCHIVE_COMPACT_INTERVAL_S must be positive")
        if self.archive_batch_rows < 1:
            out.append("FANDOM_ARCHIVE_BATCH_ROWS must be at least 1")
        if self.archive_compact_min_files < 2:
            out.append("FANDOM_ARCHIVE_COMPACT_MIN_FILES must be at least 2")
        if self.archive_retention_days < 0:
            out.append("FANDOM_ARCHIVE_RETENTION_DAYS must be 0 (keep forever) or more")
        return out

    def _capacity_problems(self) -> list[str]:
        out = []
        for name in ("capacity_lead_s", "capacity_hold_s", "chat_downscale_delay_s"):
            if getattr(self, name) < 0:
                out.append(f"{_name(name)} must be >= 0")
        if self.capacity_headroom < 1:
            out.append("FANDOM_CAPACITY_HEADROOM must be >= 1")
        if self.capacity_cpus_per_ladder <= 0 or self.capacity_tick_s <= 0:
            out.append("FANDOM_CAPACITY_CPUS_PER_LADDER and FANDOM_CAPACITY_TICK_S must be positive")
        if self.capacity_clock not in ("system", "redis"):
            out.append("FANDOM_CAPACITY_CLOCK must be 'system' or 'redis'")
        if not self.capacity_chat_resource or not self.capacity_transcode_resource:
            out.append("FANDOM_CAPACITY_CHAT_RESOURCE and FANDOM_CAPACITY_TRANSCODE_RESOURCE "
                       "must name custom resources")
        return out

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Build settings from ``env`` (default ``os.environ``); raise ConfigError on bad values."""
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            raw = env.get(f.metadata["env"])
            if raw is None or raw == "" and f.type != "str":
                continue
            values[f.name] = _parse(f, raw)
        return cls(**values)

    def to_env(self, *, secrets: bool = True) -> dict[str, str]:
        """The environment that reproduces these settings in another process."""
        return {f.metadata["env"]: str(getattr(self, f.name)) for f in dataclasses.fields(self)
                if secrets or not f.metadata["secret"]}

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)

    @property
    def warnings(self) -> list[str]:
        out = []
        if self.jwt_secret == DEV_JWT_SECRET:
            out.append("FANDOM_JWT_SECRET is not set: using the DEVELOPMENT secret. "
                       "Anyone can mint tokens. Set FANDOM_JWT_SECRET in production.")
        elif len(self.jwt_secret.encode()) < 32:
            out.append("FANDOM_JWT_SECRET is shorter than 32 bytes; HS256 wants at least 32.")
        return out


def _name(attr: str) -> str:
    return {f.name: f.metadata["env"] for f in dataclasses.fields(Settings)}[attr]


def _parse(f: dataclasses.Field, raw: str) -> Any:
    kind = {"int": int, "float": float, "str": str}[f.type]
    try:
        return kind(raw)
    except ValueError:
        raise ConfigError(
            f"{f.metadata['env']}={raw!r} is not a valid {f.type}; {f.metadata['help']}"
        ) from None


def settings_table() -> list[tuple[str, str, str]]:
    """(variable, default, meaning) rows, for docs and `fandom config`."""
    return [(f.metadata["env"], str(f.default), f.metadata["help"]) for f in dataclasses.fields(Settings)]
