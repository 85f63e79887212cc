"""Every Redis key, channel and TTL fandom uses, defined once.

Keys of one room share the hash tag ``{room}`` so the send script (which touches
meta, log and dedup together) stays legal on Redis Cluster, and the room's sharded
pub/sub channel (SPUBLISH) lives on the same shard.
"""

from __future__ import annotations


def room_meta(room: str) -> str:
    """Hash {epoch, seq}: the room's epoch and its last assigned offset."""
    return f"chat:{{{room}}}:meta"


def room_log(room: str) -> str:
    """Stream of accepted messages; entry id ``0-<offset>``; trimmed to ~history_len."""
    return f"chat:{{{room}}}:log"


def room_dedup(room: str, user: str, client_id: str) -> str:
    """String ``<offset>`` remembering a (user, client id) send for dedup_ttl_s."""
    return f"chat:{{{room}}}:dedup:{user}:{client_id}"


def room_channel(room: str) -> str:
    """Sharded pub/sub channel carrying ``<epoch>\\n<message json>`` per accepted send."""
    return f"chat:{{{room}}}:pub"


def room_of_channel(channel: str) -> str:
    """Inverse of room_channel."""
    return channel[len("chat:{"):-len("}:pub")]


def room_presence(room: str) -> str:
    """Hash replica id -> ``<count>:<unix ms>``; stale fields are dropped by readers."""
    return f"chat:{{{room}}}:presence"


ROOMS_INDEX = "chat:rooms"
"""Set of every room that has ever accepted a message (archiver and erasure walk it)."""

CHAT_REPLICAS = "chat:replicas"
"""Hash replica id -> JSON {replica, host, connections, rooms, at}: chat replica heartbeats."""

CHAT_REPLICA_TTL_S = 15
"""A chat replica whose heartbeat is older than this is considered gone."""


# --- transcoding jobs (jobs/store.py) ------------------------------------------------
# A job's keys share the hash tag {<id>} so a Lua transition touching record and
# progress stays legal on Redis Cluster.

def job(job_id: str) -> str:
    """String: the job record as JSON (jobs.model.JobRecord)."""
    return f"job:{{{job_id}}}"


def job_tasks(job_id: str) -> str:
    """Hash task name -> JSON {pid, node, progress}: what each running task reports."""
    return f"job:{{{job_id}}}:tasks"


JOBS_INDEX = "jobs:index"
"""Sorted set job id -> created unix time: every job, for listing (pruned as records expire)."""


# --- scheduled capacity (issue 5) ---------------------------------------------------
# One hash tag, {plan}, for all of them: they live on one Redis Cluster shard, so a
# script or MULTI over several stays legal.

CONCERTS = "capacity:{plan}:concerts"
"""Hash concert id -> concert JSON (cluster/calendar.py): the concert calendar."""

CAPACITY_OVERRIDE = "capacity:{plan}:override"
"""String JSON {chat_replicas, live_ladders, until, reason, by}: an operator's minimum."""

CAPACITY_APPLIED = "capacity:{plan}:applied"
"""String JSON: what the applier last applied (floor, bundles, plan, when); its memory
across restarts."""

CAPACITY_OBSERVED = "capacity:{plan}:observed"
"""String JSON: the applier's last look at the cluster (nodes, chat replicas, errors)."""

CAPACITY_OBSERVED_TTL_S = 120
"""The observation expires if the applier stops writing it (GET /api/capacity says so)."""

CAPACITY_LOG = "capacity:{plan}:log"
"""Stream of every change the applier made (and every recovery), newest last."""

CAPACITY_LOG_MAXLEN = 2000

CAPACITY_CLOCK = "capacity:{plan}:clock"
"""String unix seconds: the applier's time when FANDOM_CAPACITY_CLOCK=redis (rehearsals)."""

# --- chat archive (actors/archiver.py) ------------------------------------------------

ARCHIVE_GROUP = "fandom-archive"
"""Consumer group the archiver reads every ``chat:{room}:log`` through."""

ARCHIVE_CONSUMER = "archiver"
"""The archiver's consumer name. Fixed, so a restarted archiver gets its own pending
(delivered, not yet acknowledged) entries back."""


def user_dedup_pattern(user: str) -> str:
    """SCAN pattern for every room's dedup keys of ``user`` (GDPR erasure).

    A user id may contain ':', so this also matches the keys of a user named
    ``<user>:<more>``; callers check ownership through the key's offset.
    """
    escaped = "".join("\\" + c if c in "*?[]\\" else c for c in user)
    return f"chat:{{*}}:dedup:{escaped}:*"


def room_of_key(key: str) -> str:
    """The room of any per-room key ``chat:{<room>}:...``."""
    return key[len("chat:{"):key.index("}:")]
