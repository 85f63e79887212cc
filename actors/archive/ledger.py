"""The erasure ledger: which users were erased, up to when, and which erasures are unfinished.

Pure data; the store persists it as one JSON document. Finished erasures keep only a
SHA-256 of the user id (never the id itself), which is enough to keep that user's
erased messages out of the archive forever — e.g. if Redis is restored from a backup
taken before the erasure. Messages the user sends *after* the erasure are new data
and are archived normally (``before_ms`` bounds the suppression).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field

from actors.archive.batch import Entry


def user_hash(user: str) -> str:
    return hashlib.sha256(user.encode()).hexdigest()


@dataclass
class Erasure:
    user_sha256: str
    before_ms: int                  # messages with ts <= this are erased (Redis clock)
    user: str | None = None         # kept only while the erasure is unfinished (to resume it)
    report: dict = field(default_factory=dict)

    @property
    def done(self) -> bool:
        return self.user is None


@dataclass
class Ledger:
    erasures: list[Erasure] = field(default_factory=list)

    @classmethod
    def from_json(cls, doc: dict) -> Ledger:
        return cls([Erasure(**e) for e in doc.get("erasures", [])])

    def to_json(self) -> dict:
        return {"erasures": [asdict(e) for e in self.erasures]}

    def start(self, user: str, before_ms: int) -> Erasure:
        e = Erasure(user_hash(user), before_ms, user=user)
        self.erasures.append(e)
        return e

    def finish(self, erasure: Erasure, report: dict) -> None:
        erasure.user = None
        erasure.report = report

    def unfinished(self) -> list[Erasure]:
        return [e for e in self.erasures if not e.done]

    def suppress(self, rows: Iterable[Entry]) -> tuple[list[Entry], int]:
        """(rows not covered by any erasure, how many were dropped)."""
        if not self.erasures:
            rows = list(rows)
            return rows, 0
        cutoff: dict[str, int] = {}
        for e in self.erasures:
            cutoff[e.user_sha256] = max(cutoff.get(e.user_sha256, 0), e.before_ms)
        hashes: dict[str, str] = {}
        kept, dropped = [], 0
        for r in rows:
            h = hashes.get(r.user) or hashes.setdefault(r.user, user_hash(r.user))
            if r.ts_ms <= cutoff.get(h, -1):
                dropped += 1
            else:
                kept.append(r)
        return kept, dropped
