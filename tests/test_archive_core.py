"""Pure archiver core: parsing, batching, dedup of re-delivered offsets, partitions, ledger."""

import datetime as dt

from actors.archive.batch import Batch, Committed, Entry, file_specs, parse_entry, partition_of
from actors.archive.ledger import Ledger, user_hash
from cluster.schemas import CHAT_FILE_SCHEMA

EPOCH = 1733300000123456
T0 = int(dt.datetime(2024, 12, 4, 23, 59, 30, tzinfo=dt.UTC).timestamp() * 1000)


def entry(offset, user="ann", room="lobby", ts=None, epoch=EPOCH):
    return Entry(room, epoch, offset, f"c{offset}", user, f"hi {offset}", T0 if ts is None else ts)


def test_parse_entry_reads_the_broker_fields_and_refuses_deleted_ones():
    fields = {b"id": b"c1", b"user": b"ann", b"text": "héllo 🎉".encode(), b"ts": b"1733300000000"}
    e = parse_entry("lobby", EPOCH, b"0-7", fields)
    assert e == Entry("lobby", EPOCH, 7, "c1", "ann", "héllo 🎉", 1733300000000)
    assert parse_entry("lobby", EPOCH, b"0-8", None) is None     # XDEL'd while pending
    assert parse_entry("lobby", EPOCH, b"0-9", {b"id": b"x"}) is None


def test_partition_is_utc_date_and_hour_and_escapes_the_room():
    assert partition_of("lobby", T0) == "room=lobby/date=2024-12-04/hour=23"
    assert partition_of("$vip:1", T0 + 60_000) == "room=%24vip%3A1/date=2024-12-05/hour=0"


def test_file_specs_split_by_partition_and_epoch_sorted_by_offset():
    rows = [entry(3, ts=T0 + 40_000), entry(1), entry(2), entry(1, epoch=EPOCH + 1), entry(4, room="b")]
    specs = file_specs(rows)
    assert [(s.partition, s.epoch, s.lo, s.hi) for s in specs] == [
        ("room=b/date=2024-12-04/hour=23", EPOCH, 4, 4),
        ("room=lobby/date=2024-12-04/hour=23", EPOCH, 1, 2),
        ("room=lobby/date=2024-12-04/hour=23", EPOCH + 1, 1, 1),
        ("room=lobby/date=2024-12-05/hour=0", EPOCH, 3, 3),
    ]
    t = specs[1].table
    assert t.schema == CHAT_FILE_SCHEMA
    assert t["offset"].to_pylist() == [1, 2] and t["text_len"].to_pylist() == [4, 4]


def test_batch_is_due_by_size_or_age_and_keeps_acks_of_dropped_rows():
    b = Batch()
    assert not b.due(100.0, max_rows=3, max_age_s=30)
    b.add("lobby", "0-1", entry(1), now=100.0)
    b.add("lobby", "0-2", None, now=101.0)            # unreadable: acked, not a row
    b.add("lobby", "0-3", entry(3, user="bob"), now=102.0)
    assert not b.due(129.9, 3, 30) and b.due(130.0, 3, 30)
    b.add("lobby", "0-4", entry(4), now=103.0)
    assert b.due(103.0, 3, 30)
    assert b.drop_user("ann", before_ms=T0) == 2
    assert [e.offset for e in b.rows] == [3]
    assert b.acks == {"lobby": ["0-1", "0-2", "0-3", "0-4"]} and b.pending == 4


def test_drop_user_spares_messages_sent_after_the_erasure_began():
    b = Batch()
    b.add("lobby", "0-1", entry(1, ts=T0), 0.0)
    b.add("lobby", "0-2", entry(2, ts=T0 + 5), 0.0)
    assert b.drop_user("ann", before_ms=T0) == 1 and [e.offset for e in b.rows] == [2]


class FakeDataset:
    """Stands in for the store's two read calls; records which exact lookups were made."""

    def __init__(self, held):
        self.held = held     # {(room, epoch): set(offsets)}
        self.lookups = []

    def max_offsets(self, room):
        return {ep: max(offs) for (r, ep), offs in self.held.items() if r == room and offs}

    def offsets_in(self, room, epoch, lo, hi):
        self.lookups.append((room, epoch, lo, hi))
        return {o for o in self.held.get((room, epoch), ()) if lo <= o <= hi}


def test_committed_drops_redelivered_offsets_exactly_and_checks_only_suspects():
    data = FakeDataset({("lobby", EPOCH): {1, 2, 3, 5}})   # 4 was never committed (erased)
    c = Committed(data.max_offsets, data.offsets_in)
    rows = [entry(o) for o in (2, 3, 4, 5, 6, 7, 6)] + [entry(1, room="other")]
    fresh = c.fresh(rows)
    assert [(e.room, e.offset) for e in fresh] == [("lobby", 4), ("lobby", 6), ("lobby", 7), ("other", 1)]
    assert data.lookups == [("lobby", EPOCH, 2, 5)]      # only offsets <= known max were checked
    c.committed(fresh)
    data.lookups.clear()
    assert c.fresh([entry(8), entry(9)]) and data.lookups == []   # steady state: no reads


def test_committed_keeps_epochs_apart():
    data = FakeDataset({("lobby", EPOCH): {1, 2}})
    c = Committed(data.max_offsets, data.offsets_in)
    fresh = c.fresh([entry(1, epoch=EPOCH + 1), entry(2, epoch=EPOCH)])
    assert [(e.epoch, e.offset) for e in fresh] == [(EPOCH + 1, 1)]


def test_ledger_suppresses_erased_users_up_to_the_cut_and_forgets_the_id():
    ledger = Ledger()
    e = ledger.start("ann", before_ms=T0)
    rows = [entry(1, ts=T0 - 1), entry(2, ts=T0), entry(3, ts=T0 + 1), entry(4, user="bob")]
    kept, dropped = ledger.suppress(rows)
    assert [r.offset for r in kept] == [3, 4] and dropped == 2
    assert [x.user for x in ledger.unfinished()] == ["ann"]
    ledger.finish(e, {"dataset_rows": {"lobby": 2}})
    doc = ledger.to_json()
    assert "ann" not in repr(doc) and doc["erasures"][0]["user_sha256"] == user_hash("ann")
    again = Ledger.from_json(doc)
    assert again.unfinished() == [] and again.suppress(rows)[1] == 2
