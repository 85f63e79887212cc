"""`fandom analytics` on an archive written by the store (no Ray, no Redis needed), and
the dataset read as-is by DuckDB, Polars and pandas (the one-liners of docs/analytics.md)."""

import datetime as dt
import json
from collections import Counter

import duckdb
import pandas as pd
import polars as pl
import pytest

from actors.archive.batch import Entry, file_specs
from actors.archive.store import Store
from cluster.cli import main
from tests import chat_shape as shape


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    data_dir = str(tmp_path_factory.mktemp("archive"))
    msgs = shape.generate("cli")
    Store(data_dir).commit(file_specs(
        Entry(m.room, 1733300000000001, m.offset, m.id, m.user, m.text, m.ts_ms) for m in msgs))
    return data_dir, msgs


def test_summary_prints_tables_and_one_json_object(archive, capsys):
    data_dir, msgs = archive
    assert main(["analytics", "summary", "--room", "show-cli", "--data-dir", data_dir]) == 0
    text = capsys.readouterr().out
    assert "show-cli" in text and "peak minute" in text and "2024-12-04 23:59" in text
    assert main(["analytics", "summary", "--json", "--top", "3", "--data-dir", data_dir,
                 "--from", "2024-12-05T00:00", "--to", "2024-12-05T00:03Z"]) == 0
    doc = json.loads(capsys.readouterr().out)
    inside = [m for m in msgs if m.ts_ms >= 1733356800000 and m.ts_ms < 1733356980000]
    assert sum(r["messages"] for r in doc["messages_per_minute"]) == len(inside)
    assert len(doc["top_words"]) == 3 and doc["peak_minute"][0]["minute"].endswith("Z")


def test_bad_input_gets_a_code_and_exit_2(archive, capsys, tmp_path):
    data_dir, _ = archive
    assert main(["analytics", "summary", "--from", "yesterday", "--data-dir", data_dir]) == 2
    assert "error[invalid_time]" in capsys.readouterr().err
    assert main(["analytics", "summary", "--data-dir", str(tmp_path / "none")]) == 2
    assert "error[archive_not_found]" in capsys.readouterr().err
    assert main(["analytics", "plot", "--room", "nobody", "--out", str(tmp_path / "x.png"),
                 "--data-dir", data_dir]) == 2
    assert "error[no_messages]" in capsys.readouterr().err


def test_plot_writes_a_png(archive, tmp_path):
    data_dir, _ = archive
    out = tmp_path / "show.png"
    assert main(["analytics", "plot", "--room", "show-cli", "--out", str(out), "--data-dir", data_dir]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_duckdb_polars_and_pandas_read_the_archive_as_is(archive):
    data_dir, msgs = archive
    expect = Counter(m.room for m in msgs)
    glob = f"{data_dir}/chat/**/*.parquet"
    got = dict(duckdb.sql(f"select room, count(*) from read_parquet('{glob}', hive_partitioning=true) "
                          "group by room").fetchall())
    assert got == expect
    df = pl.scan_parquet(glob, hive_partitioning=True).group_by("room").len().collect()
    assert dict(zip(df["room"].to_list(), df["len"].to_list())) == expect
    pdf = pd.read_parquet(f"{data_dir}/chat")
    assert pdf.groupby("room", observed=True).size().to_dict() == expect
    assert {m.room for m in msgs} == {"show-cli", "side-cli", "$vip:cli"}   # '$' and ':' escaped in paths
    ts = duckdb.sql(f"select max(ts) from read_parquet('{glob}', hive_partitioning=true)").fetchall()[0][0]
    assert ts.astimezone(dt.UTC) == dt.datetime.fromtimestamp(max(m.ts_ms for m in msgs) / 1000, dt.UTC)
