"""Word and emoji counts of a text column, vectorised over the column's UTF-8 bytes.

Definitions (docs/analytics.md): a *word* is a maximal run of Unicode letters, digits and
``_`` (RE2 ``[^\\pL\\pN_]+`` separates words), lower-cased; an *emoji* is one code point
in EMOJI_RANGES (skin tones, variation selectors and joiners are not counted).

Why not ``pc.split_pattern_regex``: it pays RE2's per-match overhead for every word,
~10x the cost of everything else in a summary. Instead the string data buffer is
decoded to code points once with numpy, every byte of a non-word character becomes a
space (offsets do not move: the buffer keeps its length), and the plain
``split_pattern(" ")`` kernel does the rest. Emojis are counted straight from the code
points, with no string work at all.
"""

from __future__ import annotations

import functools
import unicodedata

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

EMOJI_RANGES = ((0x2600, 0x27BF), (0x2B50, 0x2B50), (0x2B55, 0x2B55), (0x1F300, 0x1F3FA),
                (0x1F400, 0x1F64F), (0x1F680, 0x1F6FF), (0x1F900, 0x1F9FF), (0x1FA70, 0x1FAFF))
WORD_SEPARATORS = r"[^\pL\pN_]+"   # the same definition as an RE2 regex (DuckDB, docs)
EMOJI_PATTERN = "[" + "".join(f"\\x{{{lo:X}}}-\\x{{{hi:X}}}" for lo, hi in EMOJI_RANGES) + "]"


@functools.cache
def _word_table() -> np.ndarray:
    """is_word[code point]: Unicode letter (L*), number (N*) or '_'. Built once per process."""
    table = np.zeros(0x110000, dtype=bool)
    for cp in range(0x110000):
        if unicodedata.category(chr(cp))[0] in "LN":
            table[cp] = True
    table[ord("_")] = True
    return table


@functools.cache
def _emoji_table() -> np.ndarray:
    table = np.zeros(0x110000, dtype=bool)
    for lo, hi in EMOJI_RANGES:
        table[lo:hi + 1] = True
    return table


def _bytes(arr: pa.Array) -> tuple[np.ndarray, int]:
    """(the UTF-8 bytes of ``arr``'s values, their start in the data buffer)."""
    offsets_type = np.int64 if pa.types.is_large_string(arr.type) else np.int32
    _, offsets_buf, data_buf = arr.buffers()
    offsets = np.frombuffer(offsets_buf, offsets_type)[arr.offset:arr.offset + len(arr) + 1]
    start, end = int(offsets[0]), int(offsets[-1])
    if data_buf is None or end == start:
        return np.zeros(0, np.uint8), start
    return np.frombuffer(data_buf, np.uint8)[start:end], start


def _multibyte(b: np.ndarray) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Per sequence length 2, 3, 4: (positions of lead bytes, their code points).

    Only non-ASCII characters are decoded (chat text is mostly ASCII), so the work is
    proportional to them, not to the text.
    """
    p = np.concatenate([b, np.zeros(3, np.uint8)]).astype(np.int32)
    leads, cps = [], []
    for length, lo, hi, mask in ((2, 0xC0, 0xE0, 0x1F), (3, 0xE0, 0xF0, 0x0F), (4, 0xF0, 0xF8, 0x07)):
        at = np.flatnonzero((b >= lo) & (b < hi))
        cp = p[at] & mask
        for k in range(1, length):
            cp = (cp << 6) | (p[at + k] & 0x3F)
        leads.append(at)
        cps.append(cp)
    return leads, cps


def _words_only(arr: pa.Array) -> pa.Array:
    """``arr`` with every byte of every non-word character replaced by a space."""
    b, start = _bytes(arr)
    if len(b) == 0:
        return arr
    table = _word_table()
    keep = table[b]                      # right for ASCII; multibyte bytes are set below
    for length, (at, cp) in zip((2, 3, 4), zip(*_multibyte(b))):
        verdict = table[cp]
        for k in range(length):          # every byte of the character follows its verdict
            keep[at + k] = verdict
    data = np.frombuffer(arr.buffers()[2], np.uint8).copy()
    data[start:start + len(b)] = np.where(keep, b, np.uint8(0x20))
    return pa.Array.from_buffers(arr.type, len(arr), [arr.buffers()[0], arr.buffers()[1], pa.py_buffer(data)],
                                 arr.null_count, arr.offset)


SLICE_ROWS = 100_000  # bounds the numpy temporaries (a few int32 per text byte)


def _slices(arr: pa.ChunkedArray | pa.Array) -> list[pa.Array]:
    chunks = arr.chunks if isinstance(arr, pa.ChunkedArray) else [arr]
    return [c.slice(i, SLICE_ROWS) for c in chunks for i in range(0, len(c), SLICE_ROWS)]


def word_counts(text: pa.ChunkedArray | pa.Array) -> pa.Table:
    """Table(word, count) over every word of ``text`` (unsorted)."""
    chunks = _slices(pc.utf8_lower(text))
    words = [pc.list_flatten(pc.split_pattern(_words_only(c), " ")) for c in chunks if len(c)]
    if not words:
        return pa.table({"word": pa.array([], pa.string()), "count": pa.array([], pa.int64())})
    words = pa.chunked_array(words, pa.string())
    vc = pc.value_counts(words.filter(pc.not_equal(words, "")))
    return pa.table({"word": vc.field("values"), "count": vc.field("counts")})


def emoji_counts(text: pa.ChunkedArray | pa.Array) -> pa.Table:
    """Table(emoji, count) over every emoji code point of ``text`` (unsorted)."""
    table = _emoji_table()
    found = [cp[table[cp]] for chunk in _slices(text)
             for cp in _multibyte(_bytes(chunk)[0])[1]]     # every emoji is outside ASCII
    counts = np.bincount(np.concatenate(found)) if found else np.zeros(0, np.int64)
    cps = np.flatnonzero(counts)
    return pa.table({"emoji": pa.array([chr(c) for c in cps], pa.string()),
                     "count": pa.array(counts[cps], pa.int64())})
