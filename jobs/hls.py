"""HLS playlists written by us, not by ffmpeg: media, I-frame and multivariant. Pure.

Follows Apple's HLS authoring rules for VOD: fMP4 with EXT-X-MAP, PLAYLIST-TYPE:VOD,
INDEPENDENT-SEGMENTS, measured BANDWIDTH (peak) and AVERAGE-BANDWIDTH (average)
that include the audio rendition, CODECS, RESOLUTION, FRAME-RATE, I-frame playlists.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction

from jobs import bitrate
from jobs.cmaf import INIT_NAME, Media

VERSION = 7  # fMP4 segments (EXT-X-MAP without I-frames-only needs 6); 7 is what Apple ships
MEDIA_PLAYLIST = "index.m3u8"
IFRAME_PLAYLIST = "iframes.m3u8"
MASTER = "master.m3u8"
AUDIO_GROUP = "audio"
START_BPS = 2_000_000  # Apple: list first the variant a player should start on (~2 Mb/s)


@dataclass(frozen=True)
class Rates:
    peak: int
    average: int


def _header(target: int, *extra: str) -> list[str]:
    return ["#EXTM3U", f"#EXT-X-VERSION:{VERSION}", f"#EXT-X-TARGETDURATION:{target}",
            "#EXT-X-MEDIA-SEQUENCE:0", "#EXT-X-PLAYLIST-TYPE:VOD", *extra,
            "#EXT-X-INDEPENDENT-SEGMENTS", f'#EXT-X-MAP:URI="{INIT_NAME}"']


def durations(media: Media) -> list[float]:
    return [s.duration / media.track.timescale for s in media.segments]


def segment_rates(media: Media) -> Rates:
    d = durations(media)
    sizes = [s.size for s in media.segments]
    return Rates(bitrate.peak_bps(d, sizes, bitrate.target_duration(d)), bitrate.average_bps(d, sizes))


def iframe_rates(media: Media) -> Rates:
    ts = media.track.timescale
    d = [i.duration / ts for i in media.iframes]
    sizes = [i.length for i in media.iframes]
    return Rates(bitrate.peak_bps(d, sizes, bitrate.target_duration(d)), bitrate.average_bps(d, sizes))


def media_playlist(media: Media) -> str:
    d = durations(media)
    lines = _header(bitrate.target_duration(d))
    for seg, dur in zip(media.segments, d):
        lines += [f"#EXTINF:{dur:.6f},", seg.uri]
    return "\n".join([*lines, "#EXT-X-ENDLIST", ""])


def iframe_playlist(media: Media) -> str:
    ts = media.track.timescale
    d = [i.duration / ts for i in media.iframes]
    lines = _header(bitrate.target_duration(d), "#EXT-X-I-FRAMES-ONLY")
    for frame, dur in zip(media.iframes, d):
        lines += [f"#EXTINF:{dur:.6f},", f"#EXT-X-BYTERANGE:{frame.length}@{frame.offset}", frame.uri]
    return "\n".join([*lines, "#EXT-X-ENDLIST", ""])


def _fps(fps: Fraction) -> str:
    return f"{float(fps):.3f}"


def multivariant(videos: Sequence[tuple[Media, Fraction]], audio: Media | None) -> str:
    """The master playlist over rendition folders named after each Media."""
    a = segment_rates(audio) if audio else Rates(0, 0)
    lines = ["#EXTM3U", f"#EXT-X-VERSION:{VERSION}", "#EXT-X-INDEPENDENT-SEGMENTS"]
    if audio:
        lines.append(f'#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID="{AUDIO_GROUP}",NAME="Main",DEFAULT=YES,'
                     f'AUTOSELECT=YES,CHANNELS="{audio.track.channels}",'
                     f'URI="{audio.name}/{MEDIA_PLAYLIST}"')
    variants = []
    for media, fps in videos:
        v, t = segment_rates(media), media.track
        codecs = t.codecs + (f",{audio.track.codecs}" if audio else "")
        attrs = (f"BANDWIDTH={v.peak + a.peak},AVERAGE-BANDWIDTH={v.average + a.average},"
                 f'CODECS="{codecs}",RESOLUTION={t.width}x{t.height},FRAME-RATE={_fps(fps)}')
        if audio:
            attrs += f',AUDIO="{AUDIO_GROUP}"'
        variants.append((v.average + a.average, [f"#EXT-X-STREAM-INF:{attrs}",
                                                 f"{media.name}/{MEDIA_PLAYLIST}"]))
    variants.sort(key=lambda x: -x[0])
    start = min(range(len(variants)), key=lambda i: abs(variants[i][0] - START_BPS))
    for _, entry in [variants[start], *variants[:start], *variants[start + 1:]]:
        lines += entry
    for media, _ in videos:
        r, t = iframe_rates(media), media.track
        lines.append(f"#EXT-X-I-FRAME-STREAM-INF:BANDWIDTH={r.peak},AVERAGE-BANDWIDTH={r.average},"
                     f'CODECS="{t.codecs}",RESOLUTION={t.width}x{t.height},'
                     f'URI="{media.name}/{IFRAME_PLAYLIST}"')
    return "\n".join([*lines, ""])
