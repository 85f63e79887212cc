"""How a job is cut into Ray tasks. Pure.

Time chunks start on whole segments (so on the global IDR grid) and are only used for
sources longer than ``chunk_s``. ``split`` picks the encode task granularity:

- ``chunk``: one task per chunk encodes every rung from a single decode of the source
  (what the hand-written one-command ladder does, with no extra decode cost);
- ``rendition``: one task per rung per chunk; spreads further over nodes, but decodes
  the source once per rung (+23% CPU for the default ladder on a 1080p H.264 source,
  measured by bench/transcode.py, against +4% for ``chunk``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

from jobs.ladder import Rendition

AUDIO_TASK = "audio"


@dataclass(frozen=True)
class Chunk:
    index: int
    start_frame: int
    frames: int | None  # None: to the end of the source

    def seconds(self, fps: Fraction, duration_s: float) -> float:
        """Expected length of this chunk's output."""
        start = float(self.start_frame / fps)
        end = duration_s if self.frames is None else float((self.start_frame + self.frames) / fps)
        return max(0.0, min(end, duration_s) - start)


@dataclass(frozen=True)
class EncodeTask:
    name: str
    chunk: Chunk
    renditions: tuple[str, ...]
    weight: float  # share of the job's work, for progress


def chunks(duration_s: float, fps: Fraction, segment_frames: int, chunk_s: float) -> list[Chunk]:
    """Whole-segment chunks of about chunk_s; one chunk when chunking is off or not worth it."""
    total = duration_s * fps
    if chunk_s <= 0 or duration_s <= chunk_s:
        return [Chunk(0, 0, None)]
    per = max(1, round(chunk_s * fps / segment_frames)) * segment_frames
    count = max(1, math.ceil(total / per))
    if count > 1 and total - (count - 1) * per < per / 2:
        count -= 1  # fold a short tail (under half a chunk) into the chunk before it
    return [Chunk(i, i * per, per if i < count - 1 else None) for i in range(count)]


def encode_tasks(renditions: list[Rendition], chunk_list: list[Chunk], split: str,
                 duration_s: float) -> list[EncodeTask]:
    fps = renditions[0].fps
    out = []
    for c in chunk_list:
        secs = c.seconds(fps, duration_s)
        if split == "rendition":
            for r in renditions:
                out.append(EncodeTask(f"encode-{r.name}-c{c.index}", c, (r.name,), secs * r.pixels))
        else:
            out.append(EncodeTask(f"encode-c{c.index}", c, tuple(r.name for r in renditions),
                                  secs * sum(r.pixels for r in renditions)))
    return out


def weights(tasks: list[EncodeTask], renditions: list[Rendition], has_audio: bool) -> dict[str, float]:
    """Progress weights: encodes by pixels x seconds; packaging and audio are cheap."""
    w = {t.name: t.weight for t in tasks}
    total = sum(w.values()) or 1.0
    for r in renditions:
        w[f"package-{r.name}"] = 0.01 * total
    if has_audio:
        w[AUDIO_TASK] = 0.02 * total
    return w
