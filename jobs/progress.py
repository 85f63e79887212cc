"""Progress math, pure: ffmpeg's ``-progress`` key=value blocks in, fractions out."""

from __future__ import annotations

from collections.abc import Mapping


class ProgressParser:
    """Feed lines of ``ffmpeg -progress pipe:1``; ``fraction`` is out_time / expected."""

    def __init__(self, expected_s: float):
        self.expected_s = max(expected_s, 1e-6)
        self.out_time_s = 0.0
        self.done = False

    def feed(self, line: str) -> bool:
        """Consume one line; True at the end of a block (a good moment to report)."""
        key, _, value = line.strip().partition("=")
        if key in ("out_time_us", "out_time_ms"):  # both are microseconds (an ffmpeg quirk)
            try:
                self.out_time_s = max(self.out_time_s, int(value) / 1e6)
            except ValueError:  # "N/A" before the first frame
                pass
        elif key == "progress":
            self.done = self.done or value == "end"
            return True
        return False

    @property
    def fraction(self) -> float:
        return 1.0 if self.done else min(1.0, self.out_time_s / self.expected_s)


def overall(weights: Mapping[str, float], fractions: Mapping[str, float]) -> float:
    """Weighted mean of task fractions (tasks not reported yet count as 0), in 0..1."""
    total = sum(weights.values())
    if total <= 0:
        return 0.0
    done = sum(w * min(1.0, max(0.0, fractions.get(name, 0.0))) for name, w in weights.items())
    return min(1.0, done / total)
