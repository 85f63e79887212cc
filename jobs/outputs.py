"""The files a finished ladder adds on top of its segments, and its summary. Pure.

Layout of a published ladder (docs/transcoding.md)::

    master.m3u8  manifest.mpd  ladder.json
    <rung>/init.mp4 seg_00001.m4s ... index.m3u8 iframes.m3u8   (one folder per rung)
    audio/init.mp4 seg_00001.m4s ... index.m3u8                 (when the source has audio)
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from jobs import dash, hls
from jobs.cmaf import Media
from jobs.ladder import Rendition


def manifests(videos: Sequence[tuple[Media, Rendition]], audio: Media | None,
              summary: dict) -> dict[str, str]:
    """Relative path -> text of every playlist, the MPD and ladder.json."""
    pairs = [(m, r.fps) for m, r in videos]
    files = {hls.MASTER: hls.multivariant(pairs, audio), dash.MPD_NAME: dash.mpd(pairs, audio),
             "ladder.json": json.dumps(summary, indent=2) + "\n"}
    for media, _ in videos:
        files[f"{media.name}/{hls.MEDIA_PLAYLIST}"] = hls.media_playlist(media)
        files[f"{media.name}/{hls.IFRAME_PLAYLIST}"] = hls.iframe_playlist(media)
    if audio:
        files[f"{audio.name}/{hls.MEDIA_PLAYLIST}"] = hls.media_playlist(audio)
    return files


def summary(videos: Sequence[tuple[Media, Rendition]], audio: Media | None, source: dict) -> dict:
    """The job result: where the playlists are and what each rendition measured."""
    def rates(m: Media) -> dict:
        r = hls.segment_rates(m)
        return {"peak_bps": r.peak, "average_bps": r.average, "segments": len(m.segments),
                "duration_s": round(m.duration_s, 3), "codecs": m.track.codecs}

    return {
        "master": hls.MASTER, "mpd": dash.MPD_NAME, "source": source,
        "renditions": [{"name": m.name, "width": m.track.width, "height": m.track.height,
                        "fps": round(float(r.fps), 3), "target_kbps": r.video_kbps, **rates(m)}
                       for m, r in videos],
        "audio": None if audio is None else {
            "name": audio.name, "channels": audio.track.channels,
            "sample_rate": audio.track.sample_rate, **rates(audio)},
    }
