"""Arrow schemas of fandom's datasets, declared once.

The chat archive is a hive-partitioned Parquet dataset under ``<FANDOM_DATA_DIR>/chat``::

    chat/room=<room, URI-escaped>/date=<YYYY-MM-DD>/hour=<0-23>/e<epoch>_o<lo>-<hi>_<tag>.parquet

Partition columns (room, date, hour; UTC) live only in the path, never inside the files:
DuckDB, Polars and pandas all rebuild them from the path, and a column stored twice
makes some of them refuse the dataset. A message's identity is (room, epoch, offset).
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.dataset as ds

CHAT_DIR = "chat"
"""Sub-directory of FANDOM_DATA_DIR that holds the chat archive."""

CHAT_FILE_SCHEMA = pa.schema([
    # Epoch of the room's offset sequence (offsets restart at 1 in a new epoch). Redis
    # writes it as "<unix s><6-digit µs>", which always fits an int64.
    pa.field("epoch", pa.int64(), nullable=False),
    pa.field("offset", pa.int64(), nullable=False),
    pa.field("id", pa.string(), nullable=False),          # the client's message id
    pa.field("user", pa.string(), nullable=False),
    pa.field("text", pa.string(), nullable=False),
    pa.field("ts", pa.timestamp("ms", tz="UTC"), nullable=False),
    pa.field("text_len", pa.int32(), nullable=False),     # in code points, like len(str)
])
"""Columns stored in every Parquet file of the chat archive, in this order."""

CHAT_PARTITION_SCHEMA = pa.schema([
    pa.field("room", pa.string()),
    pa.field("date", pa.date32()),
    pa.field("hour", pa.int8()),
])
"""Hive partition columns of the chat archive (UTC date and hour of ``ts``)."""

CHAT_SCHEMA = pa.unify_schemas([CHAT_FILE_SCHEMA, CHAT_PARTITION_SCHEMA])
"""What a reader of the whole dataset sees: file columns plus partition columns."""


def chat_partitioning() -> ds.Partitioning:
    """Hive partitioning of the chat archive; also formats partition paths."""
    return ds.partitioning(CHAT_PARTITION_SCHEMA, flavor="hive")
