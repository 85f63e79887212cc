"""What is in a source, read from ffmpeg's own input banner (no ffprobe needed).

The imageio-ffmpeg wheel ships ffmpeg without ffprobe, so the probe runs
``ffmpeg -hide_banner -i SRC`` and parses the stream lines it prints. ``parse_banner``
is pure; tests check it against PyAV on real files.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from fractions import Fraction

from cluster.errors import MediaError
from jobs.ladder import VideoInfo

# ffmpeg prints NTSC-style rates rounded to 2 decimals: map them back to exact rates.
_NTSC = {"23.98": Fraction(24000, 1001), "29.97": Fraction(30000, 1001),
         "47.95": Fraction(48000, 1001), "59.94": Fraction(60000, 1001),
         "119.88": Fraction(120000, 1001)}

_DURATION = re.compile(r"Duration: (\d+):(\d\d):(\d\d(?:\.\d+)?)")
_STREAM = re.compile(r"^\s*Stream #0:(\d+)(?:\[[^\]]*\])?(?:\([^)]*\))?: (Video|Audio|Subtitle|Data|Attachment): (.*)$")
_SIZE = re.compile(r"(?:^|, )(\d{2,5})x(\d{2,5})(?: \[SAR (\d+):(\d+) DAR \d+:\d+\])?")
_FPS = re.compile(r"([\d.]+)(k?) fps")
_TBR = re.compile(r"([\d.]+)(k?) tbr")
_ROTATION = re.compile(r"rotation of (-?[\d.]+) degrees")
_AUDIO = re.compile(r"(\d+) Hz, ([^,]+)")


@dataclass(frozen=True)
class SourceInfo:
    duration_s: float
    video: VideoInfo | None
    video_codec: str | None
    has_audio: bool
    audio_codec: str | None = None

    def to_json(self) -> dict:
        v = self.video
        return {"duration_s": self.duration_s, "has_audio": self.has_audio,
                "video": None if v is None else {"width": v.width, "height": v.height, "fps": str(v.fps)},
                "video_codec": self.video_codec, "audio_codec": self.audio_codec}

    @classmethod
    def from_json(cls, d: dict) -> SourceInfo:
        v = d["video"]
        return cls(d["duration_s"], None if v is None else VideoInfo(v["width"], v["height"], Fraction(v["fps"])),
                   d["video_codec"], d["has_audio"], d.get("audio_codec"))


def _rate(m: re.Match | None) -> Fraction | None:
    if not m:
        return None
    text, kilo = m.group(1), m.group(2)
    if kilo:
        return Fraction(text) * 1000
    return _NTSC.get(text) or Fraction(text).limit_denominator(1001)


def parse_banner(text: str, source: str = "source") -> SourceInfo:
    """SourceInfo from ffmpeg's ``-i`` stderr; MediaError with a code if unusable."""
    if "No such file or directory" in text and "Error opening input" in text:
        raise MediaError(f"{source}: no such file", code="source_not_found")
    if "Error opening input" in text or "Input #0" not in text:
        reason = _last_error_line(text)
        raise MediaError(f"{source} is not a video ffmpeg can read ({reason}); "
                         "is it really a media file?", code="source_unreadable")
    m = _DURATION.search(text)
    duration = int(m.group(1)) * 3600 + int(m.group(2)) * 60 + float(m.group(3)) if m else 0.0
    lines = text.splitlines()
    video = codec = audio_codec = None
    has_audio = False
    for i, line in enumerate(lines):
        s = _STREAM.match(line)
        if not s:
            continue
        kind, rest = s.group(2), s.group(3)
        if kind == "Audio" and not has_audio:
            has_audio, audio_codec = True, rest.split()[0].rstrip(",")
        if kind != "Video" or video is not None or "(attached pic)" in rest:
            continue
        size = _SIZE.search(rest)
        fps = _rate(_FPS.search(rest)) or _rate(_TBR.search(rest))
        if not size or not fps:
            raise MediaError(f"{source}: video stream without a size or frame rate "
                             f"({rest.strip()[:120]})", code="source_unreadable")
        w, h = int(size.group(1)), int(size.group(2))
        if size.group(3) and int(size.group(4)):  # non-square pixels: display width
            w = round(w * int(size.group(3)) / int(size.group(4)))
        rotation = _rotation(lines[i + 1:])
        if rotation is not None and round(abs(rotation)) % 180 == 90:
            w, h = h, w
        video, codec = VideoInfo(w, h, fps), rest.split()[0].rstrip(",")
    if duration <= 0:
        raise MediaError(f"{source}: ffmpeg reports no duration; the file looks truncated "
                         "or is a live stream", code="source_unreadable")
    return SourceInfo(duration, video, codec, has_audio, audio_codec)


def _rotation(following: list[str]) -> float | None:
    """The display-matrix rotation listed under a stream, before the next stream line."""
    for line in following:
        if _STREAM.match(line) or line.startswith(("Output", "At least")):
            return None
        m = _ROTATION.search(line)
        if m:
            return float(m.group(1))
    return None


def _last_error_line(text: str) -> str:
    for line in reversed(text.strip().splitlines()):
        line = re.sub(r"^\[[^\]]*\]\s*", "", line.strip())
        if line and not line.startswith(("At least one output", "Error opening input")):
            return line
    return "no output"


def require_video(info: SourceInfo, source: str) -> VideoInfo:
    if info.video is None:
        kinds = "audio only" if info.has_audio else "no audio or video streams"
        raise MediaError(f"{source} has no video stream ({kinds}); a ladder needs video",
                         code="no_video_stream")
    return info.video
