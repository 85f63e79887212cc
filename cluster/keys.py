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
