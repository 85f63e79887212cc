"""Chat analytics over the Parquet archive, in pure pyarrow; Ray Data for bigger data.

Every analytic is built from *partials* — small tables that merge by summing
(per-minute counts, per-user counts, word counts, a histogram of text lengths, first/last
times). One machine computes the partials of the filtered table, one slice per core;
Ray Data computes them per block on the cluster and merges them, so data larger than
one node's memory never has to meet in one place. Both paths end in the same ``finish``,
so they agree exactly (percentiles too: lengths are small integers, so the histogram
is exact, with DuckDB's ``quantile_cont`` interpolation).

Words and emojis are defined (and counted) in jobs/textstats.py. Time ranges are
[start, end) in UTC; partition pruning uses the date/hour columns.
"""

from __future__ import annotations

import datetime as dt
import math
import os
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

from cluster.schemas import CHAT_DIR, CHAT_SCHEMA, chat_partitioning
from jobs import textstats

QUANTILES = (0.5, 0.9, 0.99)
TS = pa.timestamp("ms", tz="UTC")
SUMMARY_COLUMNS = ["room", "user", "text", "ts", "text_len"]


@dataclass(frozen=True)
class Query:
    """Which rows: one room (or all), and a UTC time range [start, end)."""

    room: str | None = None
    start: dt.datetime | None = None
    end: dt.datetime | None = None

    def filter(self) -> ds.Expression | None:
        """Row filter plus the partition predicates that let the scan skip directories."""
        parts = []
        if self.room is not None:
            parts.append(pc.field("room") == self.room)
        if self.start is not None:
            s = _utc(self.start)
            parts.append(pc.field("ts") >= pa.scalar(s, TS))
            parts.append(_hour_key() >= _key(s))
        if self.end is not None:
            e = _utc(self.end)
            parts.append(pc.field("ts") < pa.scalar(e, TS))
            parts.append(_hour_key() <= _key(e))
        if not parts:
            return None
        out = parts[0]
        for p in parts[1:]:
            out = out & p
        return out

    def keeps_partition(self, room: str, date: dt.date, hour: int) -> bool:
        """The same pruning for Ray Data's path filter (it sees partition values only)."""
        if self.room is not None and room != self.room:
            return False
        key = date.toordinal() * 24 + hour
        if self.start is not None and key < _ordinal_key(_utc(self.start)):
            return False
        return self.end is None or key <= _ordinal_key(_utc(self.end))


def _utc(t: dt.datetime) -> dt.datetime:
    return t.replace(tzinfo=dt.UTC) if t.tzinfo is None else t.astimezone(dt.UTC)


def _hour_key() -> ds.Expression:
    # date (date32: days since 1970) * 24 + hour: one comparable number per partition.
    days = pc.field("date").cast(pa.int32()).cast(pa.int64())
    return days * 24 + pc.field("hour").cast(pa.int64())


def _key(t: dt.datetime) -> int:
    return (t.date() - dt.date(1970, 1, 1)).days * 24 + t.hour


def _ordinal_key(t: dt.datetime) -> int:
    return t.date().toordinal() * 24 + t.hour


def open_dataset(data_dir: str) -> ds.Dataset:
    """The chat archive under ``data_dir`` (a path or pyarrow.fs URI) as an Arrow dataset."""
    from actors.archive.store import resolve  # the one place paths and URIs are resolved

    fs, base = resolve(data_dir)
    return ds.dataset(f"{base.rstrip('/')}/{CHAT_DIR}", filesystem=fs, format="parquet",
                      partitioning=chat_partitioning(), schema=CHAT_SCHEMA)


def read(source: str | ds.Dataset, query: Query = Query(), columns: list[str] | None = None) -> pa.Table:
    dataset = open_dataset(source) if isinstance(source, str) else source
    return dataset.to_table(columns=columns or SUMMARY_COLUMNS, filter=query.filter())


# --- partials: table -> small mergeable tables --------------------------------------------

def partials(t: pa.Table) -> dict[str, pa.Table]:
    """All mergeable pieces of ``t`` (needs columns room, user, text, ts, text_len)."""
    return {"minutes": minute_counts(t), "users": user_counts(t), "words": word_counts(t),
            "emojis": emoji_counts(t), "lengths": length_histogram(t), "span": spans(t)}


def minute_counts(t: pa.Table) -> pa.Table:
    ms = pc.cast(t["ts"], pa.int64())
    minute = pc.multiply(pc.divide(ms, 60_000), 60_000)  # ts >= 0: integer division floors
    g = pa.table({"room": _plain(t["room"]), "minute": minute})
    out = g.group_by(["room", "minute"]).aggregate([("minute", "count")])
    return pa.table({"room": out["room"], "minute": pc.cast(out["minute"], TS),
                     "messages": out["minute_count"]})


def user_counts(t: pa.Table) -> pa.Table:
    out = pa.table({"room": _plain(t["room"]), "user": t["user"]}).group_by(
        ["room", "user"]).aggregate([("user", "count")])
    return out.rename_columns(["room", "user", "messages"])


def word_counts(t: pa.Table) -> pa.Table:
    return textstats.word_counts(t["text"])


def emoji_counts(t: pa.Table) -> pa.Table:
    return textstats.emoji_counts(t["text"])


def length_histogram(t: pa.Table) -> pa.Table:
    out = pa.table({"room": _plain(t["room"]), "text_len": t["text_len"]}).group_by(
        ["room", "text_len"]).aggregate([("text_len", "count")])
    return out.rename_columns(["room", "text_len", "n"])


def spans(t: pa.Table) -> pa.Table:
    out = pa.table({"room": _plain(t["room"]), "ts": t["ts"]}).group_by("room").aggregate(
        [("ts", "min"), ("ts", "max"), ("ts", "count")])
    return out.rename_columns(["room", "first", "last", "messages"])


def _plain(col):
    return col.dictionary_decode() if pa.types.is_dictionary(col.type) else col


_MERGE = {"minutes": (["room", "minute"], [("messages", "sum")]),
          "users": (["room", "user"], [("messages", "sum")]),
          "words": (["word"], [("count", "sum")]),
          "emojis": (["emoji"], [("count", "sum")]),
          "lengths": (["room", "text_len"], [("n", "sum")]),
          "span": (["room"], [("first", "min"), ("last", "max"), ("messages", "sum")])}


def merge(parts: Iterable[dict[str, pa.Table]]) -> dict[str, pa.Table]:
    """Combine partials of disjoint row sets into the partials of their union."""
    parts = list(parts)
    out = {}
    for name, (keys, aggs) in _MERGE.items():
        t = pa.concat_tables([p[name] for p in parts])
        merged = t.group_by(keys).aggregate(aggs)
        out[name] = merged.rename_columns(keys + [c for c, _ in aggs])
    return out


# --- finished analytics ------------------------------------------------------------------

def finish(p: dict[str, pa.Table], top_n: int = 10) -> dict[str, pa.Table]:
    """Partials -> every analytic, each an Arrow table (see docs/analytics.md)."""
    minutes = p["minutes"].sort_by([("room", "ascending"), ("minute", "ascending")])
    chatters = p["users"].group_by("room").aggregate([("user", "count")]).rename_columns(
        ["room", "chatters"]).sort_by("room")
    span = p["span"].sort_by("room")
    return {
        "messages_per_minute": minutes,
        "peak_minute": peak_minutes(minutes),
        "unique_chatters": chatters,
        "top_chatters": _top(p["users"].group_by("user").aggregate([("messages", "sum")])
                             .rename_columns(["user", "messages"]), "messages", "user", top_n),
        "top_words": _top(p["words"], "count", "word", top_n),
        "top_emojis": _top(p["emojis"], "count", "emoji", top_n),
        "length_percentiles": percentiles(p["lengths"]),
        "time_span": span,
    }


def peak_minutes(minutes: pa.Table) -> pa.Table:
    """Per room, the minute with the most messages (the earliest on a tie)."""
    best: dict[str, tuple[int, object]] = {}
    for room, minute, n in zip(*(minutes[c].to_pylist() for c in ("room", "minute", "messages"))):
        if room not in best or n > best[room][0]:
            best[room] = (n, minute)
    rooms = sorted(best)
    return pa.table({"room": pa.array(rooms, pa.string()),
                     "minute": pa.array([best[r][1] for r in rooms], TS),
                     "messages": pa.array([best[r][0] for r in rooms], pa.int64())})


def percentiles(hist: pa.Table, qs: tuple[float, ...] = QUANTILES) -> pa.Table:
    """Exact linear-interpolated percentiles of text_len per room, from its histogram."""
    by_room: dict[str, list[tuple[int, int]]] = {}
    for room, length, n in zip(*(hist[c].to_pylist() for c in ("room", "text_len", "n"))):
        by_room.setdefault(room, []).append((length, n))
    rooms = sorted(by_room)
    cols: dict[str, list] = {"room": rooms}
    for q in qs:
        cols[f"p{round(q * 100):g}"] = [_quantile(sorted(by_room[r]), q) for r in rooms]
    return pa.table({k: pa.array(v, pa.string() if k == "room" else pa.float64())
                     for k, v in cols.items()})


def _quantile(hist: list[tuple[int, int]], q: float) -> float:
    n = sum(c for _, c in hist)
    pos = (n - 1) * q
    lo_rank, frac = math.floor(pos), pos - math.floor(pos)
    lo = _at_rank(hist, lo_rank)
    return float(lo) if frac == 0 else lo + frac * (_at_rank(hist, lo_rank + 1) - lo)


def _at_rank(hist: list[tuple[int, int]], rank: int) -> int:
    seen = 0
    for value, count in hist:
        seen += count
        if rank < seen:
            return value
    return hist[-1][0]


def _top(t: pa.Table, count: str, key: str, n: int) -> pa.Table:
    return t.sort_by([(count, "descending"), (key, "ascending")]).slice(0, n)


# --- entry points ------------------------------------------------------------------------

def summary(source: str | ds.Dataset, query: Query = Query(), top_n: int = 10,
            threads: int | None = None) -> dict[str, pa.Table]:
    """Every analytic over the rows of ``query``, on this machine.

    The string kernels (split, regex, hashing) run on one core each, so the table is
    cut into one slice per core and the slices' partials are computed in parallel
    (pyarrow releases the GIL inside kernels) and merged — the Ray path, in miniature.
    """
    t = read(source, query)
    n = max(1, min(threads or os.cpu_count() or 1, t.num_rows // 100_000))
    if n == 1:
        return finish(partials(t), top_n)
    step = -(-t.num_rows // n)
    with ThreadPoolExecutor(n) as pool:
        parts = list(pool.map(partials, [t.slice(i, step) for i in range(0, t.num_rows, step)]))
    return finish(merge(parts), top_n)


def messages_per_minute(source, query: Query = Query()) -> pa.Table:
    t = read(source, query, ["room", "ts"])
    return minute_counts(t).sort_by([("room", "ascending"), ("minute", "ascending")])


def unique_chatters(source, query: Query = Query()) -> pa.Table:
    users = user_counts(read(source, query, ["room", "user"]))
    return users.group_by("room").aggregate([("user", "count")]).rename_columns(
        ["room", "chatters"]).sort_by("room")


def top_chatters(source, query: Query = Query(), n: int = 10) -> pa.Table:
    users = user_counts(read(source, query, ["room", "user"]))
    return _top(users.group_by("user").aggregate([("messages", "sum")]).rename_columns(
        ["user", "messages"]), "messages", "user", n)


def top_words(source, query: Query = Query(), n: int = 10) -> pa.Table:
    return _top(word_counts(read(source, query, ["text"])), "count", "word", n)


def top_emojis(source, query: Query = Query(), n: int = 10) -> pa.Table:
    return _top(emoji_counts(read(source, query, ["text"])), "count", "emoji", n)


def peak_minute(source, query: Query = Query()) -> pa.Table:
    return peak_minutes(messages_per_minute(source, query))


def length_percentiles(source, query: Query = Query()) -> pa.Table:
    return percentiles(length_histogram(read(source, query, ["room", "text_len"])))


def time_span(source, query: Query = Query()) -> pa.Table:
    return spans(read(source, query, ["room", "ts"])).sort_by("room")


def _empty_partials() -> dict[str, pa.Table]:
    empty = pa.table({"room": pa.array([], pa.string()), "user": pa.array([], pa.string()),
                      "text": pa.array([], pa.string()), "ts": pa.array([], TS),
                      "text_len": pa.array([], pa.int32())})
    return partials(empty)


def summary_ray(data_dir: str, query: Query = Query(), top_n: int = 10) -> dict[str, pa.Table]:
    """The same summary through Ray Data: partials per block on the cluster, merged here."""
    import ray.data
    from ray.data.datasource import Partitioning, PathPartitionFilter

    from actors.archive.store import resolve

    fs, base = resolve(data_dir)
    root = f"{base.rstrip('/')}/{CHAT_DIR}"

    def keep(p: dict[str, str]) -> bool:
        return query.keeps_partition(p["room"], dt.date.fromisoformat(p["date"]), int(p["hour"]))

    data = ray.data.read_parquet(
        root, filesystem=fs, columns=SUMMARY_COLUMNS,
        partitioning=Partitioning("hive", base_dir=root, field_names=["room", "date", "hour"]),
        partition_filter=PathPartitionFilter.of(keep, style="hive", base_dir=root,
                                                field_names=["room", "date", "hour"]),
        file_extensions=["parquet"])
    row_filter = query.filter()

    def block_partials(batch: pa.Table) -> pa.Table:
        if row_filter is not None:
            batch = batch.filter(_rows_only(query))
        return _pack(partials(batch))

    packed = data.map_batches(block_partials, batch_format="pyarrow", batch_size=None).take_all()
    parts = [_unpack(row) for row in packed]
    return finish(merge(parts) if parts else _empty_partials(), top_n)


def _rows_only(query: Query) -> ds.Expression:
    # Ray Data hands partition values over as strings; filter rows on room and ts only.
    expr = pc.field("ts") == pc.field("ts")
    if query.room is not None:
        expr = expr & (pc.field("room") == query.room)
    if query.start is not None:
        expr = expr & (pc.field("ts") >= pa.scalar(_utc(query.start), TS))
    if query.end is not None:
        expr = expr & (pc.field("ts") < pa.scalar(_utc(query.end), TS))
    return expr


def _pack(p: dict[str, pa.Table]) -> pa.Table:
    """Partials -> one row of Arrow IPC blobs (a block's output must be one table)."""
    def ipc(t: pa.Table) -> bytes:
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, t.schema) as w:
            w.write_table(t)
        return sink.getvalue().to_pybytes()
    return pa.table({name: pa.array([ipc(t)], pa.binary()) for name, t in p.items()})


def _unpack(row: dict) -> dict[str, pa.Table]:
    return {name: pa.ipc.open_stream(blob).read_all() for name, blob in row.items()}


# --- presentation helpers (CLI, HTTP) ----------------------------------------------------

def parse_time(text: str | None, what: str) -> dt.datetime | None:
    """ISO 8601 (``2024-12-04T20:00``, ``...Z``, ``...+01:00``) -> aware UTC; naive means UTC."""
    from cluster.errors import InvalidInput

    if text is None or text == "":
        return None
    try:
        return _utc(dt.datetime.fromisoformat(text.strip().replace("Z", "+00:00")))
    except ValueError:
        raise InvalidInput(f"{what} must be an ISO 8601 time like 2024-12-04T20:00 (UTC "
                           f"unless it has an offset); got {text!r}", code="invalid_time") from None


def as_json(result: dict[str, pa.Table]) -> dict[str, list[dict]]:
    """Analytics tables -> JSON-ready lists of rows (times as ISO 8601 UTC strings)."""
    def clean(v):
        return v.isoformat().replace("+00:00", "Z") if isinstance(v, dt.datetime) else v
    return {name: [{k: clean(v) for k, v in row.items()} for row in t.to_pylist()]
            for name, t in result.items()}
