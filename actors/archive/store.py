"""The chat archive on disk (or any pyarrow.fs): atomic commits, compaction, erasure, retention.

One writer: only the archiver actor calls the mutating methods, one at a time, so
they never race each other. Readers (analytics, DuckDB, Polars, ...) may read at any
time and only ever see whole files:

- a file is written under a hidden temp name (``.<name>.tmp``: every reader skips it)
  in its final directory, flushed to disk, then renamed — an atomic step on POSIX;
- an erasure rewrites a file the same way and renames it *over* the old one, so a
  reader sees the old or the new file, never neither, never both;
- compaction replaces many files by one; it cannot be one atomic step, so it writes a
  journal first and ``recover()`` finishes or undoes it after a crash (see compact()).

Bookkeeping (journal, erasure ledger, trash) lives in ``<data_dir>/chat-state``,
outside the dataset directory, so no reader ever trips over it.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import unquote

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from actors.archive.batch import FileSpec, file_name
from actors.archive.ledger import Ledger
from cluster.schemas import CHAT_DIR, CHAT_FILE_SCHEMA, CHAT_SCHEMA, chat_partitioning

Checkpoint = Callable[[str], None]
"""Called at each crash-relevant step by name; the actor can pause there (crash tests)."""

_FILE = re.compile(r"^e(?P<epoch>\d+)_o(?P<lo>\d+)-(?P<hi>\d+)_(?P<tag>[0-9a-f]+)\.parquet$")


def _nothing(_: str) -> None:
    pass


@dataclass(frozen=True)
class FileInfo:
    path: str           # full path on the store's filesystem
    partition: str      # "room=.../date=.../hour=..."
    epoch: int
    lo: int
    hi: int

    @property
    def room(self) -> str:
        return room_of(self.partition)

    @property
    def date(self) -> dt.date:
        return dt.date.fromisoformat(self.partition.split("/")[1].partition("=")[2])


def room_of(partition: str) -> str:
    """Inverse of the hive formatting (pyarrow escapes values as URI segments)."""
    return unquote(partition.split("/")[0].partition("=")[2])


def resolve(data_dir: str) -> tuple[pafs.FileSystem, str]:
    """A local path (relative is fine) or a pyarrow.fs URI -> (filesystem, base path)."""
    if "://" in data_dir:
        return pafs.FileSystem.from_uri(data_dir)
    return pafs.LocalFileSystem(), os.path.abspath(data_dir)


class Store:
    def __init__(self, data_dir: str):
        self.fs, base = resolve(data_dir)
        self.root = f"{base.rstrip('/')}/{CHAT_DIR}"
        self.state = f"{base.rstrip('/')}/{CHAT_DIR}-state"
        self.local = isinstance(self.fs, pafs.LocalFileSystem)
        for d in (self.root, f"{self.state}/journal", f"{self.state}/trash"):
            self.fs.create_dir(d, recursive=True)

    # --- commit -----------------------------------------------------------------------

    def commit(self, specs: list[FileSpec], checkpoint: Checkpoint = _nothing) -> list[str]:
        """Make ``specs`` visible as files; returns their paths. Durable when it returns."""
        staged = []
        for spec in specs:
            final = f"{self.root}/{spec.partition}/{spec.name(_tag())}"
            staged.append((self._write_temp(spec.table, final), final))
        checkpoint("flush_written")
        for i, (tmp, final) in enumerate(staged):
            self._publish(tmp, final)
            if i == 0 and len(staged) > 1:
                checkpoint("flush_renamed_one")
        checkpoint("flush_renamed")
        return [final for _, final in staged]

    def _write_temp(self, table: pa.Table, final: str) -> str:
        directory, _, name = final.rpartition("/")
        self.fs.create_dir(directory, recursive=True)
        tmp = f"{directory}/.{name}.tmp"
        pq.write_table(table, tmp, filesystem=self.fs)
        if self.local:
            _fsync_path(tmp)
        return tmp

    def _publish(self, tmp: str, final: str) -> None:
        self.fs.move(tmp, final)  # rename(2) locally: atomic, and replaces ``final`` if present
        if self.local:
            _fsync_path(final.rpartition("/")[0], directory=True)

    # --- reading what is there --------------------------------------------------------

    def files(self, under: str = "") -> list[FileInfo]:
        """Committed files under ``root/under`` (temp files and strangers are skipped)."""
        base = f"{self.root}/{under}".rstrip("/")
        sel = pafs.FileSelector(base, recursive=True, allow_not_found=True)
        out = []
        for info in self.fs.get_file_info(sel):
            m = _FILE.match(info.base_name)
            if info.type != pafs.FileType.File or not m:
                continue
            partition = info.path[len(self.root) + 1:].rpartition("/")[0]
            out.append(FileInfo(info.path, partition, int(m["epoch"]), int(m["lo"]), int(m["hi"])))
        return sorted(out, key=lambda f: (f.partition, f.epoch, f.lo, f.path))

    def room_files(self, room: str) -> list[FileInfo]:
        return self.files(chat_partitioning().format(pc.field("room") == room)[0])

    def max_offsets(self, room: str) -> dict[int, int]:
        """{epoch: highest offset named by any committed file of ``room``}."""
        out: dict[int, int] = {}
        for f in self.room_files(room):
            out[f.epoch] = max(out.get(f.epoch, 0), f.hi)
        return out

    def offsets_in(self, room: str, epoch: int, lo: int, hi: int) -> set[int]:
        """Offsets of ``room``/``epoch`` in [lo, hi] that committed files actually hold."""
        held: set[int] = set()
        for f in self.room_files(room):
            if f.epoch == epoch and f.lo <= hi and f.hi >= lo:
                col = pq.read_table(f.path, columns=["offset"], filesystem=self.fs)["offset"]
                held.update(o for o in col.to_pylist() if lo <= o <= hi)
        return held

    def dataset(self) -> ds.Dataset:
        return ds.dataset(self.root, filesystem=self.fs, format="parquet",
                          partitioning=chat_partitioning(), schema=CHAT_SCHEMA)

    # --- crash recovery ---------------------------------------------------------------

    def recover(self) -> dict:
        """Finish or undo whatever a crash interrupted. Run before any other mutation."""
        journals = [i for i in self.fs.get_file_info(pafs.FileSelector(f"{self.state}/journal"))
                    if i.base_name.endswith(".json")]
        finished = 0
        for info in journals:
            self._finish_compaction(json.loads(self._read_text(info.path)))
            self.fs.delete_file(info.path)
            finished += 1
        temps = [i.path for i in self.fs.get_file_info(
            pafs.FileSelector(self.root, recursive=True, allow_not_found=True))
            if i.type == pafs.FileType.File and i.base_name.startswith(".") and i.base_name.endswith(".tmp")]
        for path in temps:  # a single writer: any temp file left now belongs to a dead run
            self.fs.delete_file(path)
        self.fs.delete_dir_contents(f"{self.state}/trash", missing_dir_ok=True)
        return {"compactions_finished": finished, "temp_files_removed": len(temps)}

    def _finish_compaction(self, job: dict) -> None:
        """Target renamed -> the sources must go; not renamed -> the sources stay."""
        target_there = self.fs.get_file_info(job["target"]).type == pafs.FileType.File
        if target_there:
            for src in job["sources"]:
                self._delete_if_there(src)
        else:
            self._delete_if_there(job["temp"])

    # --- compaction -------------------------------------------------------------------

    def compact(self, min_files: int, checkpoint: Checkpoint = _nothing) -> dict:
        """Merge each partition's files of one epoch into one when there are >= min_files.

        Protocol: write the merged file under a temp name; write a journal naming target
        and sources; rename the target; delete the sources; delete the journal. A crash
        before the rename leaves the sources (the journal says: drop the temp); after it,
        recovery deletes the sources. Readers can see both for the instant between the
        rename and the deletes — never a missing row, and never after recover().
        """
        groups: dict[tuple[str, int], list[FileInfo]] = {}
        for f in self.files():
            groups.setdefault((f.partition, f.epoch), []).append(f)
        merged = removed = 0
        for (partition, epoch), files in sorted(groups.items()):
            if len(files) < max(2, min_files):
                continue
            table = pa.concat_tables(
                pq.read_table(f.path, filesystem=self.fs, schema=CHAT_FILE_SCHEMA) for f in files)
            table = table.sort_by([("offset", "ascending")])
            target = f"{self.root}/{partition}/" + file_name(
                epoch, min(f.lo for f in files), max(f.hi for f in files), _tag())
            tmp = self._write_temp(table, target)
            job = {"target": target, "temp": tmp, "sources": [f.path for f in files]}
            self._write_json(f"{self.state}/journal/{_tag()}.json", job)
            checkpoint("compact_journaled")
            self._publish(tmp, target)
            checkpoint("compact_renamed")
            for f in files:
                self._delete_if_there(f.path)
            merged += 1
            removed += len(files)
            self._clear_journal()
        return {"partitions_compacted": merged, "files_merged": removed}

    def _clear_journal(self) -> None:
        self.fs.delete_dir_contents(f"{self.state}/journal", missing_dir_ok=True)

    # --- erasure ----------------------------------------------------------------------

    def erase(self, user: str, before_ms: int, checkpoint: Checkpoint = _nothing) -> dict:
        """Rewrite every file holding ``user``'s rows (ts <= before_ms) without them."""
        cut = pa.scalar(before_ms, pa.timestamp("ms", tz="UTC"))
        doomed = (pc.field("user") == user) & (pc.field("ts") <= cut)
        scan = self.dataset().scanner(columns=["__filename"], filter=doomed)
        hits = pc.value_counts(scan.to_table()["__filename"]).to_pylist()
        by_room: dict[str, int] = {}
        rewritten = deleted = 0
        for hit in sorted(hits, key=lambda h: h["values"]):
            path = hit["values"]
            table = pq.read_table(path, filesystem=self.fs, schema=CHAT_FILE_SCHEMA)
            keep = table.filter(~doomed)
            if keep.num_rows:
                self._publish(self._write_temp(keep, path), path)
                rewritten += 1
            else:
                self.fs.delete_file(path)
                deleted += 1
            room = room_of(path[len(self.root) + 1:])
            by_room[room] = by_room.get(room, 0) + table.num_rows - keep.num_rows
            checkpoint("erase_rewrote_one")
        return {"rows": by_room, "files_rewritten": rewritten, "files_deleted": deleted}

    def load_ledger(self) -> Ledger:
        path = f"{self.state}/erasures.json"
        if self.fs.get_file_info(path).type != pafs.FileType.File:
            return Ledger()
        return Ledger.from_json(json.loads(self._read_text(path)))

    def save_ledger(self, ledger: Ledger) -> None:
        self._write_json(f"{self.state}/erasures.json", ledger.to_json())

    # --- retention --------------------------------------------------------------------

    def retention(self, keep_days: int, today: dt.date) -> list[str]:
        """Delete date partitions older than ``keep_days`` before ``today``; returns them.

        Each partition first moves out of the dataset in one rename (into chat-state/
        trash), so readers never see half of one.
        """
        if keep_days <= 0:
            return []
        oldest_kept = today - dt.timedelta(days=keep_days)
        doomed = sorted({"/".join(f.partition.split("/")[:2]) for f in self.files()
                         if f.date < oldest_kept})
        for partition in doomed:
            trash = f"{self.state}/trash/{_tag()}"
            self.fs.move(f"{self.root}/{partition}", trash)
            self.fs.delete_dir(trash)
        return doomed

    # --- small helpers ----------------------------------------------------------------

    def _write_json(self, path: str, doc: dict) -> None:
        directory, _, name = path.rpartition("/")
        tmp = f"{directory}/.{name}.tmp"
        with self.fs.open_output_stream(tmp) as out:
            out.write(json.dumps(doc, sort_keys=True).encode())
        if self.local:
            _fsync_path(tmp)
        self._publish(tmp, path)

    def _read_text(self, path: str) -> str:
        with self.fs.open_input_stream(path) as f:
            return f.read().decode()

    def _delete_if_there(self, path: str) -> None:
        if self.fs.get_file_info(path).type == pafs.FileType.File:
            self.fs.delete_file(path)


def _tag() -> str:
    return uuid.uuid4().hex[:12]


def _fsync_path(path: str, directory: bool = False) -> None:
    fd = os.open(path, os.O_RDONLY | (os.O_DIRECTORY if directory else 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
