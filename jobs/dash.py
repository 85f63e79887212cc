"""The DASH MPD over the same CMAF segments the HLS playlists use. Pure.

Static (VOD) live-profile MPD: one video AdaptationSet (all rungs share one IDR grid,
so segments align), one audio AdaptationSet, SegmentTemplate + SegmentTimeline with the
exact measured durations.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Sequence
from fractions import Fraction

from jobs.cmaf import DASH_MEDIA_TEMPLATE, INIT_NAME, Media
from jobs.hls import segment_rates

MPD_NAME = "manifest.mpd"
NS = "urn:mpeg:dash:schema:mpd:2011"
PROFILES = "urn:mpeg:dash:profile:isoff-live:2011,urn:mpeg:dash:profile:cmaf:2019"


def _iso_duration(seconds: float) -> str:
    return f"PT{seconds:.3f}S"


def _timeline(parent: ET.Element, media: Media) -> None:
    tmpl = ET.SubElement(parent, "SegmentTemplate", {
        "timescale": str(media.track.timescale),
        "initialization": f"{media.name}/{INIT_NAME}",
        "media": f"{media.name}/{DASH_MEDIA_TEMPLATE}",
        "startNumber": "1",
    })
    timeline = ET.SubElement(tmpl, "SegmentTimeline")
    runs: list[list[int]] = []  # [start, duration, repeats]
    for seg in media.segments:
        last = runs[-1] if runs else None
        if last and last[1] == seg.duration and last[0] + last[1] * (last[2] + 1) == seg.start:
            last[2] += 1
        else:
            runs.append([seg.start, seg.duration, 0])
    for start, duration, repeat in runs:
        attrs = {"t": str(start), "d": str(duration)}
        if repeat:
            attrs["r"] = str(repeat)
        ET.SubElement(timeline, "S", attrs)


def _frame_rate(fps: Fraction) -> str:
    return str(fps.numerator) if fps.denominator == 1 else f"{fps.numerator}/{fps.denominator}"


def mpd(videos: Sequence[tuple[Media, Fraction]], audio: Media | None) -> str:
    duration = max([m.duration_s for m, _ in videos] + ([audio.duration_s] if audio else []))
    root = ET.Element("MPD", {
        "xmlns": NS, "profiles": PROFILES, "type": "static", "minBufferTime": "PT4S",
        "mediaPresentationDuration": _iso_duration(duration),
    })
    period = ET.SubElement(root, "Period", {"id": "0", "start": "PT0S"})
    vset = ET.SubElement(period, "AdaptationSet", {
        "id": "0", "contentType": "video", "mimeType": "video/mp4", "segmentAlignment": "true",
        "startWithSAP": "1",
        "maxWidth": str(max(m.track.width for m, _ in videos)),
        "maxHeight": str(max(m.track.height for m, _ in videos)),
    })
    for media, fps in videos:
        t = media.track
        rep = ET.SubElement(vset, "Representation", {
            "id": media.name, "bandwidth": str(segment_rates(media).peak), "codecs": t.codecs,
            "width": str(t.width), "height": str(t.height), "frameRate": _frame_rate(fps),
            "sar": "1:1",
        })
        _timeline(rep, media)
    if audio:
        aset = ET.SubElement(period, "AdaptationSet", {
            "id": "1", "contentType": "audio", "mimeType": "audio/mp4", "segmentAlignment": "true",
            "startWithSAP": "1",
        })
        ET.SubElement(aset, "Role", {"schemeIdUri": "urn:mpeg:dash:role:2011", "value": "main"})
        rep = ET.SubElement(aset, "Representation", {
            "id": audio.name, "bandwidth": str(segment_rates(audio).peak),
            "codecs": audio.track.codecs, "audioSamplingRate": str(audio.track.sample_rate),
        })
        ET.SubElement(rep, "AudioChannelConfiguration", {
            "schemeIdUri": "urn:mpeg:dash:23003:3:audio_channel_configuration:2011",
            "value": str(audio.track.channels)})
        _timeline(rep, audio)
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"
