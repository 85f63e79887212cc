"""Measured bit rates of a packaged rendition, as RFC 8216 defines them. Pure."""

from __future__ import annotations

import math
from collections.abc import Sequence


def target_duration(durations_s: Sequence[float]) -> int:
    """EXT-X-TARGETDURATION: every EXTINF, rounded to the nearest integer, fits under it."""
    return max([1, *(math.floor(d + 0.5) for d in durations_s)])


def average_bps(durations_s: Sequence[float], sizes: Sequence[int]) -> int:
    """Sum of segment bits over the playlist's duration (RFC 8216 §4.3.4.2 AVERAGE-BANDWIDTH)."""
    total = sum(durations_s)
    return math.ceil(sum(sizes) * 8 / total) if total > 0 else 0


def peak_bps(durations_s: Sequence[float], sizes: Sequence[int], target_s: float) -> int:
    """Peak segment bit rate (RFC 8216 §4.3.4.2 BANDWIDTH): the highest rate of any run of
    contiguous segments lasting 0.5-1.5 x the target duration; the whole playlist's rate
    when it is shorter than that."""
    lo, hi = 0.5 * target_s, 1.5 * target_s
    best = 0.0
    n = len(durations_s)
    for i in range(n):
        dur, bits = 0.0, 0
        for j in range(i, n):
            dur += durations_s[j]
            bits += sizes[j] * 8
            if dur > hi:
                break
            if dur >= lo:
                best = max(best, bits / dur)
    if best == 0.0 and sum(durations_s) > 0:
        best = sum(sizes) * 8 / sum(durations_s)
    return math.ceil(best)
