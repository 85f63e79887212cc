"""The Parquet store on a real filesystem: atomic commits, crash recovery, compaction,
erasure rewrite, retention. A 'crash' here is an exception thrown at a named step, after
which a fresh Store runs recover() exactly as a restarted archiver does."""

import datetime as dt
import os

import duckdb
import pyarrow.parquet as pq
import pytest

from actors.archive.batch import Entry, file_specs
from actors.archive.store import Store
from jobs.analytics import open_dataset

EPOCH = 1733300000123456
T0 = int(dt.datetime(2024, 12, 4, 22, 0, tzinfo=dt.UTC).timestamp() * 1000)


class Crash(Exception):
    pass


def crash_at(point):
    def checkpoint(name):
        if name == point:
            raise Crash(name)
    return checkpoint


def rows(lo, hi, room="lobby", user=lambda o: f"u{o % 3}", step_ms=1000):
    return [Entry(room, EPOCH, o, f"c{o}", user(o), f"text {o}", T0 + o * step_ms) for o in range(lo, hi + 1)]


def identities(data_dir):
    t = open_dataset(data_dir).to_table(columns=["room", "epoch", "offset"])
    return sorted(zip(t["room"].to_pylist(), t["epoch"].to_pylist(), t["offset"].to_pylist()))


def all_files(root):
    return sorted(os.path.relpath(os.path.join(d, f), root) for d, _, fs in os.walk(root) for f in fs)


def test_commit_is_readable_by_arrow_and_duckdb_and_names_carry_offsets(tmp_path):
    store = Store(str(tmp_path))
    store.commit(file_specs(rows(1, 5) + rows(1, 2, room="$vip")))
    assert identities(str(tmp_path)) == sorted([("$vip", EPOCH, 1), ("$vip", EPOCH, 2)] +
                                                [("lobby", EPOCH, o) for o in range(1, 6)])
    assert store.max_offsets("lobby") == {EPOCH: 5} and store.max_offsets("$vip") == {EPOCH: 2}
    assert store.offsets_in("lobby", EPOCH, 2, 3) == {2, 3}
    n = duckdb.sql(f"select count(*) from read_parquet('{tmp_path}/chat/**/*.parquet', "
                   "hive_partitioning=true) where room = '$vip'").fetchall()[0][0]
    assert n == 2


def test_crash_mid_write_leaves_only_hidden_temps_that_recovery_removes(tmp_path):
    store = Store(str(tmp_path))
    with pytest.raises(Crash):
        store.commit(file_specs(rows(1, 5)), crash_at("flush_written"))
    names = all_files(tmp_path / "chat")
    assert names and all(os.path.basename(n).startswith(".") for n in names)
    assert identities(str(tmp_path)) == []                       # readers see nothing
    assert Store(str(tmp_path)).recover()["temp_files_removed"] == 1
    assert all_files(tmp_path / "chat") == []


def test_crash_between_renames_publishes_whole_files_only(tmp_path):
    store = Store(str(tmp_path))
    specs = file_specs(rows(1, 3) + rows(1, 2, room="b"))
    with pytest.raises(Crash):
        store.commit(specs, crash_at("flush_renamed_one"))
    assert identities(str(tmp_path)) == [("b", EPOCH, 1), ("b", EPOCH, 2)]
    Store(str(tmp_path)).recover()
    assert identities(str(tmp_path)) == [("b", EPOCH, 1), ("b", EPOCH, 2)]


def flushes(store, n, per=10):
    for i in range(n):
        store.commit(file_specs(rows(i * per + 1, (i + 1) * per)))


@pytest.mark.parametrize("point", ["compact_journaled", "compact_renamed"])
def test_compaction_crash_is_finished_or_undone_by_recovery(tmp_path, point):
    store = Store(str(tmp_path))
    flushes(store, 4)
    expect = identities(str(tmp_path))
    with pytest.raises(Crash):
        store.compact(min_files=3, checkpoint=crash_at(point))
    report = Store(str(tmp_path)).recover()
    assert report["compactions_finished"] == 1
    assert identities(str(tmp_path)) == expect                  # every row exactly once
    files = store.files()
    assert len(files) == (1 if point == "compact_renamed" else 4)
    assert store.compact(min_files=3)["files_merged"] == (0 if point == "compact_renamed" else 4)
    assert identities(str(tmp_path)) == expect and len(store.files()) == 1
    assert (store.files()[0].lo, store.files()[0].hi) == (1, 40)


def test_compaction_leaves_small_partitions_and_other_epochs_alone(tmp_path):
    store = Store(str(tmp_path))
    flushes(store, 2)
    store.commit(file_specs([Entry("lobby", EPOCH + 1, 1, "x", "u", "t", T0 + 5000)]))
    assert store.compact(min_files=3) == {"partitions_compacted": 0, "files_merged": 0}
    assert store.compact(min_files=2) == {"partitions_compacted": 1, "files_merged": 2}
    assert len(store.files()) == 2


def test_erase_rewrites_in_place_and_spares_other_users_and_later_messages(tmp_path):
    store = Store(str(tmp_path))
    flushes(store, 3)                                            # offsets 1..30, users u0 u1 u2
    store.commit(file_specs(rows(1, 3, room="solo", user=lambda o: "u1")))
    before = {f.path for f in store.files()}
    cut = T0 + 25 * 1000                                         # u1 rows after 25 s stay
    report = store.erase("u1", cut)
    t = open_dataset(str(tmp_path)).to_table()
    left = [(r, u, o) for r, u, o in zip(t["room"].to_pylist(), t["user"].to_pylist(), t["offset"].to_pylist())]
    assert [o for r, u, o in left if u == "u1"] == [28]
    assert sorted(o for r, u, o in left if u != "u1") == [o for o in range(1, 31) if o % 3 != 1]
    assert report == {"rows": {"lobby": 9, "solo": 3}, "files_rewritten": 3, "files_deleted": 1}
    assert {f.path for f in store.files()} == {p for p in before if "room=solo" not in p}


def test_erase_crash_halfway_is_completed_by_running_it_again(tmp_path):
    store = Store(str(tmp_path))
    flushes(store, 3)
    with pytest.raises(Crash):
        store.erase("u2", T0 + 10**9, crash_at("erase_rewrote_one"))
    users = open_dataset(str(tmp_path)).to_table(columns=["user"])["user"].to_pylist()
    assert 0 < users.count("u2") < 10                          # one file done, others not yet
    Store(str(tmp_path)).recover()
    store.erase("u2", T0 + 10**9)
    users = open_dataset(str(tmp_path)).to_table(columns=["user"])["user"].to_pylist()
    assert "u2" not in users and len(users) == 20


def test_retention_drops_whole_old_date_partitions(tmp_path):
    store = Store(str(tmp_path))
    day = 86_400_000
    store.commit(file_specs([Entry("lobby", EPOCH, o, "c", "u", "t", T0 - d * day)
                             for o, d in ((1, 10), (2, 3), (3, 2), (4, 0))]))
    today = dt.date(2024, 12, 4)
    assert store.retention(0, today) == []
    gone = store.retention(2, today)
    assert gone == ["room=lobby/date=2024-11-24", "room=lobby/date=2024-12-01"]
    assert [o for _, _, o in identities(str(tmp_path))] == [3, 4]
    assert all_files(tmp_path / "chat-state" / "trash") == []


def test_files_are_plain_parquet_without_partition_columns(tmp_path):
    store = Store(str(tmp_path))
    path = store.commit(file_specs(rows(1, 2)))[0]
    assert pq.read_schema(path).names == ["epoch", "offset", "id", "user", "text", "ts", "text_len"]
