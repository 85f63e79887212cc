"""The archiver's pure core: stream entries in, deduplicated Parquet file specs out.

No Redis, no files, no clock: the actor passes in what it read, what the dataset
already holds (``Committed``) and the time. Exactly-once rests on two facts kept here:

- Nothing is acknowledged in Redis before the file holding it is committed, so a
  crash only ever causes *re*-delivery, never loss.
- A re-delivered entry is recognised by its identity (room, epoch, offset) against
  the dataset itself, so re-delivery never causes a duplicate row.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc

from cluster.schemas import CHAT_FILE_SCHEMA, chat_partitioning

MS_PER_HOUR = 3_600_000
MS_PER_DAY = 86_400_000
_EPOCH_DAY = dt.date(1970, 1, 1)


@dataclass(frozen=True, slots=True)
class Entry:
    """One chat message as the room's stream holds it."""

    room: str
    epoch: int
    offset: int
    id: str
    user: str
    text: str
    ts_ms: int


def parse_entry(room: str, epoch: int, entry_id: bytes | str, fields: dict | None) -> Entry | None:
    """A stream entry -> Entry; None when it was deleted (erased/trimmed) or is malformed."""
    if not fields:
        return None
    try:
        f = {_s(k): _s(v) for k, v in fields.items()}
        return Entry(room, epoch, stream_offset(entry_id), f["id"], f["user"], f["text"], int(f["ts"]))
    except (KeyError, ValueError):
        return None


def stream_offset(entry_id: bytes | str) -> int:
    """``0-<offset>`` -> offset."""
    return int(_s(entry_id).partition("-")[2])


def _s(v: bytes | str) -> str:
    return v.decode() if isinstance(v, bytes) else v


@dataclass
class Batch:
    """Entries read but not yet committed, and the stream ids to acknowledge after commit.

    Acks are kept apart from rows: an entry dropped from the rows (erased, duplicate,
    unreadable) must still be acknowledged once the rest of its batch is committed.
    """

    rows: list[Entry] = field(default_factory=list)
    acks: dict[str, list[str]] = field(default_factory=dict)  # room -> stream ids
    started_at: float | None = None

    def add(self, room: str, entry_id: bytes | str, entry: Entry | None, now: float) -> None:
        if self.started_at is None:
            self.started_at = now
        self.acks.setdefault(room, []).append(_s(entry_id))
        if entry is not None:
            self.rows.append(entry)

    @property
    def pending(self) -> int:
        return sum(len(ids) for ids in self.acks.values())

    def due(self, now: float, max_rows: int, max_age_s: float) -> bool:
        """Flush when the batch is big enough or its oldest entry waited long enough."""
        if self.started_at is None:
            return False
        return len(self.rows) >= max_rows or now - self.started_at >= max_age_s

    def drop_user(self, user: str, before_ms: int) -> int:
        """Forget ``user``'s rows sent up to ``before_ms`` (erasure); their acks stay."""
        before = len(self.rows)
        self.rows = [e for e in self.rows if e.user != user or e.ts_ms > before_ms]
        return before - len(self.rows)


class Committed:
    """What the dataset already holds, per (room, epoch), to drop re-delivered offsets.

    ``max_offsets(room)`` gives {epoch: highest offset} from file names (cheap: a listing),
    loaded once per room. Entries above that are new for sure; entries at or below it
    are checked exactly with ``offsets_in(room, epoch, lo, hi)`` (reads offsets of the
    few files whose range overlaps). That second path runs only after a restart or a
    re-delivery, never in steady state.
    """

    def __init__(self, max_offsets: Callable[[str], dict[int, int]],
                 offsets_in: Callable[[str, int, int, int], set[int]]):
        self._max_offsets = max_offsets
        self._offsets_in = offsets_in
        self._max: dict[str, dict[int, int]] = {}

    def fresh(self, rows: Iterable[Entry]) -> list[Entry]:
        """The rows whose (room, epoch, offset) is in neither the dataset nor earlier in ``rows``."""
        by_key: dict[tuple[str, int], dict[int, Entry]] = {}
        for e in rows:
            by_key.setdefault((e.room, e.epoch), {}).setdefault(e.offset, e)
        out: list[Entry] = []
        for (room, epoch), entries in by_key.items():
            known = self.max_offset(room, epoch)
            suspect = [o for o in entries if o <= known]
            held = self._offsets_in(room, epoch, min(suspect), max(suspect)) if suspect else set()
            out.extend(e for o, e in sorted(entries.items()) if o not in held)
        return out

    def max_offset(self, room: str, epoch: int) -> int:
        if room not in self._max:
            self._max[room] = dict(self._max_offsets(room))
        return self._max[room].get(epoch, 0)

    def committed(self, rows: Iterable[Entry]) -> None:
        """Record rows just made durable."""
        for e in rows:
            per_room = self._max.setdefault(e.room, {})
            per_room[e.epoch] = max(per_room.get(e.epoch, 0), e.offset)

    def forget(self, room: str) -> None:
        """Reload ``room`` from the dataset next time (after files changed under us)."""
        self._max.pop(room, None)


@dataclass(frozen=True)
class FileSpec:
    """One Parquet file to commit: its partition directory, name bounds and rows."""

    partition: str      # e.g. "room=lobby/date=2024-12-04/hour=20"
    epoch: int
    lo: int             # lowest and highest offset in the file: names carry them so
    hi: int             # a restart can find committed offsets from a listing alone
    table: pa.Table

    def name(self, tag: str) -> str:
        return file_name(self.epoch, self.lo, self.hi, tag)


def file_name(epoch: int, lo: int, hi: int, tag: str) -> str:
    return f"e{epoch}_o{lo}-{hi}_{tag}.parquet"


def partition_of(room: str, ts_ms: int) -> str:
    """Hive partition path of a message: room, UTC date, UTC hour."""
    day, hour = divmod(ts_ms // MS_PER_HOUR, 24)
    date = _EPOCH_DAY + dt.timedelta(days=day)
    expr = (pc.field("room") == room) & (pc.field("date") == date) & (pc.field("hour") == hour)
    return chat_partitioning().format(expr)[0]


def file_specs(rows: Iterable[Entry]) -> list[FileSpec]:
    """Group rows into one file per (partition, epoch), each sorted by offset."""
    groups: dict[tuple[str, str, int], list[Entry]] = {}
    hour_paths: dict[tuple[str, int], str] = {}
    for e in rows:
        hour_key = (e.room, e.ts_ms // MS_PER_HOUR)
        path = hour_paths.get(hour_key)
        if path is None:
            path = hour_paths[hour_key] = partition_of(e.room, e.ts_ms)
        groups.setdefault((path, e.room, e.epoch), []).append(e)
    specs = []
    for (path, _, epoch), entries in sorted(groups.items()):
        entries.sort(key=lambda e: e.offset)
        specs.append(FileSpec(path, epoch, entries[0].offset, entries[-1].offset, to_table(entries)))
    return specs


def to_table(entries: list[Entry]) -> pa.Table:
    """Rows -> an Arrow table with exactly CHAT_FILE_SCHEMA."""
    return pa.table({
        "epoch": pa.array([e.epoch for e in entries], pa.int64()),
        "offset": pa.array([e.offset for e in entries], pa.int64()),
        "id": pa.array([e.id for e in entries], pa.string()),
        "user": pa.array([e.user for e in entries], pa.string()),
        "text": pa.array([e.text for e in entries], pa.string()),
        "ts": pa.array([e.ts_ms for e in entries], pa.timestamp("ms", tz="UTC")),
        "text_len": pa.array([len(e.text) for e in entries], pa.int32()),
    }, schema=CHAT_FILE_SCHEMA)
