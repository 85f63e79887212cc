"""ffmpeg argument lists for every step of a ladder, built with ffmpeg-python. Pure.

- ``video_chunk``: one time range of the source -> one MP4 per rendition, from one
  decode. IDR every ``gop_frames`` counted from the chunk start; chunks start on whole
  segments, so every chunk's IDRs land on the same global 2 s grid.
- ``audio``: the whole source's first audio track -> stereo AAC-LC, CMAF fragments.
  Encoded once, never per chunk: per-chunk AAC would add a priming gap at every seam.
- ``stitch``: chunk MP4s of one rendition -> one fragmented MP4 with continuous
  timestamps, one fragment (moof+mdat) per GOP; jobs/cmaf.py cuts it into segments.
"""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction

import ffmpeg

from jobs.ladder import Rendition

# Video: one fragment per GOP so every IDR starts a moof (I-frame playlists can address
# it), negative CTS offsets so each fragment's first IDR presents at exactly its tfdt and
# no edit list is needed. No delay_moov here: it would write an edit list that cuts the
# first B-frame delay off the presentation.
VIDEO_MOVFLAGS = "+frag_keyframe+empty_moov+default_base_moof+negative_cts_offsets+cmaf"
# Audio: delay_moov lets the muxer write the edit list that hides the AAC priming samples.
AUDIO_MOVFLAGS = "+empty_moov+delay_moov+default_base_moof+cmaf"
AUDIO_RATE = 48_000
COMMON = ["-hide_banner", "-nostdin", "-y", "-loglevel", "error", "-xerror"]


def _compile(node, binary: str) -> list[str]:
    args = node.compile(cmd=binary)
    return [args[0], *COMMON, *args[1:]]


def video_chunk(binary: str, source: str, renditions: Sequence[Rendition], outputs: Sequence[str],
                *, start_frame: int, frames: int | None, preset: str) -> list[str]:
    """Encode frames [start_frame, start_frame+frames) (to the end if None) of every rendition."""
    fps = renditions[0].fps
    frame_s = 1 / fps
    opts: dict = {}
    if start_frame > 0:
        # Half a frame before the wanted frame: robust to timestamp rounding either way.
        opts["ss"] = _secs((start_frame - Fraction(1, 2)) * frame_s)
    if frames is not None:
        opts["t"] = _secs(frames * frame_s)
    video = (ffmpeg.input(source, **opts)["v:0"]
             .filter("setpts", "PTS-STARTPTS")
             .filter("fps", fps=str(fps)))
    branches = [video] if len(renditions) == 1 else [
        video.split()[i] for i in range(len(renditions))]
    outs = []
    for branch, r, path in zip(branches, renditions, outputs, strict=True):
        scaled = branch.filter("scale", r.width, r.height).filter("setsar", "1")
        kw = {
            "c:v": "libx264", "preset": preset, "profile:v": "high", "pix_fmt": "yuv420p",
            "b:v": f"{r.video_kbps}k", "maxrate": f"{r.maxrate_kbps}k", "bufsize": f"{r.bufsize_kbps}k",
            "g": r.gop_frames, "keyint_min": r.gop_frames, "sc_threshold": 0,
            # Closed GOPs, IDRs only where we put them: counted in frames (the fps filter
            # made the stream constant-rate), so no float drift at any length.
            "force_key_frames": f"expr:eq(mod(n,{r.gop_frames}),0)",
            "x264-params": "open-gop=0:scenecut=0",
            "an": None, "sn": None, "dn": None, "f": "mp4",
        }
        if frames is not None:
            kw["frames:v"] = frames
        outs.append(ffmpeg.output(scaled, path, **kw))
    return _compile(ffmpeg.merge_outputs(*outs), binary)


def audio(binary: str, source: str, output: str, *, kbps: int, segment_s: int) -> list[str]:
    """The first audio stream as stereo AAC-LC in fragments of about one segment each."""
    stream = ffmpeg.input(source)["a:0"]
    out = ffmpeg.output(stream, output, **{
        "c:a": "aac", "profile:a": "aac_low", "b:a": f"{kbps}k", "ac": 2, "ar": AUDIO_RATE,
        "vn": None, "sn": None, "dn": None,
        "frag_duration": segment_s * 1_000_000, "movflags": AUDIO_MOVFLAGS, "f": "mp4"})
    return _compile(out, binary)


def stitch(binary: str, concat_list: str, output: str) -> list[str]:
    """Concatenate chunk MP4s (listed in an ffmpeg concat file) into one fragmented MP4."""
    stream = ffmpeg.input(concat_list, f="concat", safe=0)["v:0"]
    out = ffmpeg.output(stream, output, **{"c": "copy", "movflags": VIDEO_MOVFLAGS, "f": "mp4"})
    return _compile(out, binary)


def concat_list(paths: Sequence[str]) -> str:
    """The concat demuxer's list file text for these chunk files."""
    return "".join("file '{}'\n".format(p.replace("'", "'\\''")) for p in paths)


def _secs(x: Fraction) -> str:
    return f"{float(x):.6f}"
