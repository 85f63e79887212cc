"""Word and emoji counting over UTF-8 bytes agrees with plain Python on tricky text."""

from collections import Counter

import pyarrow as pa
import pyarrow.compute as pc

from jobs import textstats
from tests import chat_shape as shape

TEXTS = ["Hello wörld, 42 fans!!", "", "🎉🎉 yes👍🏽 ❤️ über_cool", "ÉNCORE—encore…Encore",
         "日本語 のテキスト", "a\u200db 👨\u200d👩\u200d👧", "tab\tsep\nnew line", "🔥", "x" * 300]


def as_dict(t, key):
    return dict(zip(t[key].to_pylist(), t["count"].to_pylist()))


def test_words_and_emojis_match_python_on_slices_and_chunks():
    arr = pa.chunked_array([pa.array(TEXTS[:4]), pa.array(TEXTS[4:])])
    sliced = pa.array(["junk before"] + TEXTS).slice(1)         # a non-zero array offset
    for text in (arr, sliced):
        expect_words = Counter(w for t in TEXTS for w in shape.words(t))
        assert as_dict(textstats.word_counts(text), "word") == expect_words
        expect_emojis = Counter(e for t in TEXTS for e in shape.emojis(t))
        assert as_dict(textstats.emoji_counts(text), "emoji") == expect_emojis


def test_the_regex_definition_gives_the_same_words():
    text = pa.array(TEXTS)
    by_regex = pc.list_flatten(pc.split_pattern_regex(pc.utf8_lower(text), textstats.WORD_SEPARATORS))
    assert as_dict(textstats.word_counts(text), "word") == Counter(w for w in by_regex.to_pylist() if w)


def test_empty_input():
    assert textstats.word_counts(pa.array([], pa.string())).num_rows == 0
    assert textstats.emoji_counts(pa.chunked_array([], pa.string())).num_rows == 0
