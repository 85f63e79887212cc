"""The ABR ladder model: named presets, custom ladder files, and adaptation to a source.

Pure: no ffmpeg, no Ray. A ``Ladder`` says what ops want (rungs by short side and
bitrate); ``renditions()`` says what this source gets: never upscaled, aspect kept
(portrait sources get portrait rungs), even dimensions, frame rate capped at 60.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import yaml

from cluster.errors import MediaError

MAX_FPS = 60
# VBV caps relative to the target bitrate (Apple: peak within ~10% of nominal).
MAXRATE_FACTOR = 1.1
BUFSIZE_FACTOR = 2.0
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,31}$")


@dataclass(frozen=True)
class Rung:
    name: str          # also the rendition's folder name in the output
    short_side: int    # 1080 for "1080p": height of landscape, width of portrait sources
    video_kbps: int


@dataclass(frozen=True)
class Ladder:
    name: str
    rungs: tuple[Rung, ...]
    audio_kbps: int = 128
    segment_s: int = 4
    keyframe_s: int = 2

    def to_json(self) -> dict:
        return {"name": self.name, "audio_kbps": self.audio_kbps, "segment_s": self.segment_s,
                "keyframe_s": self.keyframe_s,
                "rungs": [{"name": r.name, "height": r.short_side, "video_kbps": r.video_kbps}
                          for r in self.rungs]}


PRESETS: dict[str, Ladder] = {
    "default": Ladder("default", (
        Rung("1080p", 1080, 6000),
        Rung("720p", 720, 3000),
        Rung("540p", 540, 2000),
        Rung("360p", 360, 730),
    )),
    # Apple's example H.264 ladder (HLS authoring spec), one bitrate per size.
    "apple": Ladder("apple", (
        Rung("1080p", 1080, 7800), Rung("720p", 720, 4500), Rung("540p", 540, 2000),
        Rung("432p", 432, 1100), Rung("360p", 360, 365), Rung("234p", 234, 145),
    )),
}


@dataclass(frozen=True)
class VideoInfo:
    """What a probe found about the source's first video stream, as displayed."""
    width: int
    height: int
    fps: Fraction


@dataclass(frozen=True)
class Rendition:
    name: str
    width: int
    height: int
    fps: Fraction
    video_kbps: int
    gop_frames: int  # frames between IDRs: keyframe_s at this frame rate

    @property
    def maxrate_kbps(self) -> int:
        return round(self.video_kbps * MAXRATE_FACTOR)

    @property
    def bufsize_kbps(self) -> int:
        return round(self.video_kbps * BUFSIZE_FACTOR)

    @property
    def pixels(self) -> int:
        return self.width * self.height

    def to_json(self) -> dict:
        return {"name": self.name, "width": self.width, "height": self.height,
                "fps": str(self.fps), "video_kbps": self.video_kbps, "gop_frames": self.gop_frames}

    @classmethod
    def from_json(cls, d: dict) -> Rendition:
        return cls(d["name"], d["width"], d["height"], Fraction(d["fps"]), d["video_kbps"],
                   d["gop_frames"])


def output_fps(source_fps: Fraction) -> Fraction:
    """The source rate, or the largest integer fraction of it that is <= 60 (120 -> 60)."""
    divisor = max(1, math.ceil(source_fps / MAX_FPS))
    return source_fps / divisor


def _even(x: float) -> int:
    return max(2, 2 * round(x / 2))


def renditions(ladder: Ladder, video: VideoInfo) -> list[Rendition]:
    """The rungs this source gets, highest first; never above the source's short side."""
    fps = output_fps(video.fps)
    # ceil: with 29.97 fps an IDR every 60 frames is 2.002 s; x264 never needs to add one.
    gop = math.ceil(fps * ladder.keyframe_s)
    portrait = video.height > video.width
    short, long_ = (video.width, video.height) if portrait else (video.height, video.width)
    aspect = Fraction(long_, short)

    def make(name: str, side: int, kbps: int) -> Rendition:
        s, l = _even(side), _even(side * aspect)
        w, h = (s, l) if portrait else (l, s)
        return Rendition(name, w, h, fps, kbps, gop)

    out = [make(r.name, r.short_side, r.video_kbps) for r in ladder.rungs if r.short_side <= short]
    if not out:
        # Smaller than every rung: one rendition at the source size, bitrate scaled down
        # by area from the smallest rung (never upscale, never an empty ladder).
        low = min(ladder.rungs, key=lambda r: r.short_side)
        kbps = max(64, round(low.video_kbps * (short / low.short_side) ** 2))
        out = [make(f"{_even(short)}p", short, kbps)]
    seen, unique = set(), []
    for r in out:  # rungs that collapse to one size after rounding: keep the first
        if (r.width, r.height) not in seen:
            seen.add((r.width, r.height))
            unique.append(r)
    return unique


# --- custom ladders ----------------------------------------------------------------------

def parse_ladder(data: object, *, name: str = "custom") -> Ladder:
    """A Ladder from a decoded YAML/JSON object; MediaError(invalid_ladder) says what is wrong."""
    def bad(msg: str) -> MediaError:
        return MediaError(f"ladder {name!r}: {msg}", code="invalid_ladder")

    if not isinstance(data, dict):
        raise bad("must be a mapping with a 'rungs' list")
    unknown = set(data) - {"name", "rungs", "audio_kbps", "segment_s", "keyframe_s"}
    if unknown:
        raise bad(f"unknown keys {sorted(unknown)}; allowed: name, rungs, audio_kbps, "
                  "segment_s, keyframe_s")
    rungs_raw = data.get("rungs")
    if not isinstance(rungs_raw, list) or not rungs_raw:
        raise bad("'rungs' must be a non-empty list of {name, height, video_kbps}")
    rungs = []
    for i, r in enumerate(rungs_raw):
        if not isinstance(r, dict) or set(r) - {"name", "height", "video_kbps"}:
            raise bad(f"rung {i} must be a mapping with name, height, video_kbps")
        height, kbps = r.get("height"), r.get("video_kbps")
        if not _int_in(height, 64, 4320) or not _int_in(kbps, 50, 100_000):
            raise bad(f"rung {i}: height must be 64-4320 and video_kbps 50-100000 (integers)")
        rname = str(r.get("name") or f"{height}p")
        if not _NAME.match(rname) or rname == "audio":
            raise bad(f"rung {i}: name {rname!r} must be 1-32 of A-Z a-z 0-9 _ . - and not 'audio'")
        rungs.append(Rung(rname, height, kbps))
    if len({r.name for r in rungs}) != len(rungs):
        raise bad("rung names must be unique")
    audio = data.get("audio_kbps", 128)
    seg, key = data.get("segment_s", 4), data.get("keyframe_s", 2)
    if not _int_in(audio, 32, 512):
        raise bad("audio_kbps must be an integer 32-512")
    if not _int_in(key, 1, 10) or not _int_in(seg, 1, 20) or seg % key:
        raise bad("segment_s must be a whole multiple of keyframe_s (integers, e.g. 4 and 2)")
    rungs.sort(key=lambda r: (-r.short_side, -r.video_kbps))
    return Ladder(str(data.get("name") or name), tuple(rungs), audio, seg, key)


def _int_in(v: object, lo: int, hi: int) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and lo <= v <= hi


def load_ladder_file(path: str | Path) -> Ladder:
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as e:
        raise MediaError(f"cannot read ladder file {path}: {e.strerror}", code="unknown_ladder") from None
    try:
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as e:
        raise MediaError(f"ladder file {path} is not valid {path.suffix[1:] or 'YAML'}: {e}",
                         code="invalid_ladder") from None
    return parse_ladder(data, name=path.stem)


def resolve_ladder(spec: str | dict | None, ladders_dir: str | Path | None = None) -> Ladder:
    """A preset name, a name of a file in ladders_dir, a file path, or an inline mapping."""
    if spec is None or spec == "":
        return PRESETS["default"]
    if isinstance(spec, dict):
        return parse_ladder(spec)
    if spec in PRESETS:
        return PRESETS[spec]
    if ladders_dir and _NAME.match(spec):
        for ext in (".yaml", ".yml", ".json"):
            candidate = Path(ladders_dir) / f"{spec}{ext}"
            if candidate.is_file():
                return load_ladder_file(candidate)
    if Path(spec).suffix in (".yaml", ".yml", ".json") and Path(spec).is_file():
        return load_ladder_file(spec)
    known = sorted(PRESETS) + (sorted(p.stem for p in Path(ladders_dir).glob("*.*")
                                      if p.suffix in (".yaml", ".yml", ".json"))
                               if ladders_dir and Path(ladders_dir).is_dir() else [])
    raise MediaError(f"unknown ladder {spec!r}; known: {', '.join(known)} "
                     "(or pass a .yaml/.json ladder file)", code="unknown_ladder")


DEFAULT_LADDER = PRESETS["default"]
