"""Pure cores of the transcoding pool: no ffmpeg, no Ray, no Redis."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from fractions import Fraction

import pytest

from cluster.errors import MediaError
from jobs import bitrate, dash, hls, plan, progress, storage
from jobs.cmaf import IFrame, Media, Segment, Track
from jobs.ffmpeg import classify
from jobs.ladder import DEFAULT_LADDER, VideoInfo, output_fps, parse_ladder, renditions, resolve_ladder
from jobs.model import JobRecord, JobSpec, JobStatus
from jobs.probe import parse_banner, require_video

# --- ladder ----------------------------------------------------------------------------


def dims(rs):
    return [(r.name, r.width, r.height) for r in rs]


def test_default_ladder_on_1080p_landscape():
    rs = renditions(DEFAULT_LADDER, VideoInfo(1920, 1080, Fraction(30)))
    assert dims(rs) == [("1080p", 1920, 1080), ("720p", 1280, 720), ("540p", 960, 540), ("360p", 640, 360)]
    assert [r.video_kbps for r in rs] == [6000, 3000, 2000, 730]
    assert rs[0].maxrate_kbps == 6600 and rs[0].bufsize_kbps == 12000
    assert all(r.gop_frames == 60 and r.fps == 30 for r in rs)


def test_portrait_source_gets_portrait_rungs():
    rs = renditions(DEFAULT_LADDER, VideoInfo(1080, 1920, Fraction(25)))
    assert dims(rs) == [("1080p", 1080, 1920), ("720p", 720, 1280), ("540p", 540, 960), ("360p", 360, 640)]
    assert rs[0].gop_frames == 50


def test_never_upscale_and_even_dimensions():
    rs = renditions(DEFAULT_LADDER, VideoInfo(1280, 720, Fraction(30)))
    assert [r.name for r in rs] == ["720p", "540p", "360p"]
    rs = renditions(DEFAULT_LADDER, VideoInfo(1440, 1080, Fraction(24)))  # 4:3
    assert dims(rs)[0] == ("1080p", 1440, 1080) and dims(rs)[-1] == ("360p", 480, 360)
    rs = renditions(DEFAULT_LADDER, VideoInfo(853, 481, Fraction(30)))
    assert dims(rs) == [("360p", 638, 360)]
    assert all(r.width % 2 == 0 and r.height % 2 == 0 for r in rs)


def test_source_smaller_than_every_rung_keeps_its_size():
    rs = renditions(DEFAULT_LADDER, VideoInfo(320, 180, Fraction(30)))
    assert dims(rs) == [("180p", 320, 180)]
    assert 64 <= rs[0].video_kbps < 730


def test_frame_rate_capped_at_60_by_integer_division():
    assert output_fps(Fraction(120)) == 60
    assert output_fps(Fraction(100)) == 50
    assert output_fps(Fraction(60000, 1001)) == Fraction(60000, 1001)
    ntsc = renditions(DEFAULT_LADDER, VideoInfo(1920, 1080, Fraction(30000, 1001)))
    assert ntsc[0].gop_frames == 60  # 2.002 s: x264 never needs an extra IDR


def test_custom_ladder_parsing_and_errors(tmp_path):
    lad = parse_ladder({"rungs": [{"height": 480, "video_kbps": 1200},
                                  {"name": "hd", "height": 720, "video_kbps": 2500}], "audio_kbps": 96})
    assert [r.name for r in lad.rungs] == ["hd", "480p"] and lad.audio_kbps == 96
    for bad in ({"rungs": []}, {"rungs": [{"height": 10, "video_kbps": 100}]},
                {"rungs": [{"height": 480, "video_kbps": 100}], "segment_s": 5},
                {"rungs": [{"height": 480, "video_kbps": 100}], "colour": "red"},
                {"rungs": [{"name": "audio", "height": 480, "video_kbps": 100}]}, [1, 2]):
        with pytest.raises(MediaError) as e:
            parse_ladder(bad)
        assert e.value.code == "invalid_ladder"
    (tmp_path / "small.yaml").write_text("rungs:\n  - {height: 360, video_kbps: 700}\n")
    (tmp_path / "broken.json").write_text("{nope")
    assert resolve_ladder("small", tmp_path).rungs[0].short_side == 360
    assert resolve_ladder(str(tmp_path / "small.yaml")).name == "small"
    assert resolve_ladder(None) is DEFAULT_LADDER and resolve_ladder("apple").rungs[-1].short_side == 234
    with pytest.raises(MediaError) as e:
        resolve_ladder("nope", tmp_path)
    assert e.value.code == "unknown_ladder" and "small" in e.value.message
    with pytest.raises(MediaError) as e:
        resolve_ladder("broken", tmp_path)
    assert e.value.code == "invalid_ladder"


# --- probe -----------------------------------------------------------------------------

BANNER_ROTATED = """Input #0, mov,mp4,m4a,3gp,3g2,mj2, from 'rot.mp4':
  Duration: 00:00:04.00, start: 0.000000, bitrate: 1955 kb/s
  Stream #0:0[0x1](und): Video: h264 (Constrained Baseline) (avc1 / 0x31637661), yuv420p(progressive), 640x360 [SAR 1:1 DAR 16:9], 1953 kb/s, 30 fps, 30 tbr, 15360 tbn (default)
    Metadata:
      handler_name    : VideoHandler
    Side data:
      Display Matrix: rotation of 90.00 degrees
At least one output file must be specified
"""
BANNER_NTSC_SAR = """Input #0, mpegts, from 'ntsc.ts':
  Duration: 00:01:02.50, start: 1.400000, bitrate: 3820 kb/s
  Program 1
  Stream #0:0[0x100]: Video: h264 (Constrained Baseline) ([27][0][0][0] / 0x001B), yuv420p(progressive), 720x576 [SAR 16:15 DAR 4:3], 29.97 fps, 29.97 tbr, 90k tbn, start 1.400000
  Stream #0:1[0x101](eng): Audio: aac (LC) ([15][0][0][0] / 0x000F), 48000 Hz, stereo, fltp, 130 kb/s
"""
BANNER_AUDIO_ONLY = """Input #0, mov,mp4,m4a,3gp,3g2,mj2, from 'a.m4a':
  Duration: 00:00:30.02, start: 0.000000, bitrate: 129 kb/s
  Stream #0:0[0x1](und): Audio: aac (LC) (mp4a / 0x6134706D), 48000 Hz, stereo, fltp, 128 kb/s (default)
At least one output file must be specified
"""
BANNER_NOT_MEDIA = """[in#0 @ 0x56155c344040] Format mov,mp4,m4a,3gp,3g2,mj2 detected only with low score of 1, misdetection possible!
[in#0 @ 0x56155c344040] moov atom not found
[in#0 @ 0x56155c343cc0] Error opening input: Invalid data found when processing input
Error opening input file text.mp4.
Error opening input files: Invalid data found when processing input
"""
BANNER_MISSING = """[in#0 @ 0x55b4f76cccc0] Error opening input: No such file or directory
Error opening input file nothere.mp4.
"""


def test_probe_banner_parsing():
    rot = parse_banner(BANNER_ROTATED)
    assert rot.video == VideoInfo(360, 640, Fraction(30)) and not rot.has_audio and rot.duration_s == 4.0
    ntsc = parse_banner(BANNER_NTSC_SAR)
    assert ntsc.video == VideoInfo(768, 576, Fraction(30000, 1001))
    assert ntsc.has_audio and ntsc.duration_s == 62.5
    audio = parse_banner(BANNER_AUDIO_ONLY)
    assert audio.video is None and audio.has_audio
    with pytest.raises(MediaError) as e:
        require_video(audio, "a.m4a")
    assert e.value.code == "no_video_stream" and "audio only" in e.value.message
    for text, code in ((BANNER_NOT_MEDIA, "source_unreadable"), (BANNER_MISSING, "source_not_found")):
        with pytest.raises(MediaError) as e:
            parse_banner(text, "x.mp4")
        assert e.value.code == code
    assert "moov atom not found" in str(pytest.raises(MediaError, parse_banner, BANNER_NOT_MEDIA).value)


def test_ffmpeg_failures_are_classified():
    assert classify("[out#0] x.mp4: Permission denied", what="w").code == "output_not_writable"
    assert classify("corrupt input packet in stream 0", what="w").code == "source_corrupt"
    assert classify("error while decoding MB 27 1", what="w").code == "source_corrupt"
    odd = classify("Unknown encoder 'libx265'", what="encoding 720p")
    assert odd.code == "encode_failed" and "libx265" in odd.message and odd.status == 500


# --- progress, bitrate, plan -------------------------------------------------------------

def test_progress_parser_and_overall():
    p = progress.ProgressParser(expected_s=4.0)
    blocks = ["frame=10", "out_time_us=N/A", "progress=continue", "out_time_us=2000000",
              "progress=continue"]
    ends = [p.feed(line) for line in blocks]
    assert ends == [False, False, True, False, True] and p.fraction == 0.5
    p.feed("progress=end")
    assert p.fraction == 1.0
    assert progress.overall({"a": 3, "b": 1}, {"a": 1.0}) == 0.75
    assert progress.overall({"a": 1}, {"a": 7.0}) == 1.0


def test_bitrate_math_follows_rfc8216():
    assert bitrate.target_duration([4.0, 4.004, 4.49, 1.0]) == 4
    assert bitrate.target_duration([4.5]) == 5
    d, sizes = [4.0, 4.0, 4.0, 1.0], [500_000, 1_000_000, 500_000, 10_000]
    assert bitrate.average_bps(d, sizes) == pytest.approx(2_010_000 * 8 / 13, abs=1)
    assert bitrate.peak_bps(d, sizes, 4) == 2_000_000  # the 1 MB segment over 4 s
    # 2 s segments: runs of 1-3 segments (2-6 s) count; the worst pair wins.
    assert bitrate.peak_bps([2, 2, 2, 2], [100, 900, 900, 100], 4) == 900 * 8 * 2 // 4 * 2 // 2


def test_chunks_start_on_segments_and_fold_short_tails():
    fps = Fraction(25)
    assert plan.chunks(9.0, fps, 100, 0) == [plan.Chunk(0, 0, None)]
    assert plan.chunks(9.0, fps, 100, 60) == [plan.Chunk(0, 0, None)]
    assert plan.chunks(9.0, fps, 100, 4) == [plan.Chunk(0, 0, 100), plan.Chunk(1, 100, None)]
    cs = plan.chunks(3600.0, Fraction(30000, 1001), 120, 60)
    assert all(c.start_frame % 120 == 0 for c in cs) and cs[-1].frames is None
    assert sum(c.frames for c in cs[:-1]) == cs[-1].start_frame


def test_encode_tasks_by_split_mode():
    rs = renditions(DEFAULT_LADDER, VideoInfo(1920, 1080, Fraction(30)))
    cs = plan.chunks(20.0, Fraction(30), 120, 8)
    by_chunk = plan.encode_tasks(rs, cs, "chunk", 20.0)
    by_rung = plan.encode_tasks(rs, cs, "rendition", 20.0)
    assert len(by_chunk) == len(cs) and all(len(t.renditions) == 4 for t in by_chunk)
    assert len(by_rung) == 4 * len(cs) and {t.renditions[0] for t in by_rung} == {r.name for r in rs}
    assert sum(t.weight for t in by_chunk) == pytest.approx(sum(t.weight for t in by_rung))
    w = plan.weights(by_chunk, rs, has_audio=True)
    assert "audio" in w and "package-360p" in w


# --- playlists -------------------------------------------------------------------------

def fake_media(name="720p", kind="video", n=3, seg_dur=61440, ts=15360, size=1_500_000):
    t = Track(kind, ts, "avc1.64001f" if kind == "video" else "mp4a.40.2", width=1280 if kind == "video" else 0,
              height=720 if kind == "video" else 0, channels=2 if kind == "audio" else 0,
              sample_rate=48000 if kind == "audio" else 0)
    segs = [Segment(f"seg_{i + 1:05d}.m4s", i * seg_dur, seg_dur if i < n - 1 else seg_dur // 4, size, True)
            for i in range(n)]
    iframes = []
    if kind == "video":
        for s in segs:
            iframes.append(IFrame(s.uri, 24, 40_000, s.start, min(s.duration, seg_dur // 2)))
    return Media(name, t, segs, iframes)


def test_media_and_iframe_playlists():
    m = fake_media()
    text = hls.media_playlist(m)
    for tag in ("#EXT-X-PLAYLIST-TYPE:VOD", "#EXT-X-TARGETDURATION:4", '#EXT-X-MAP:URI="init.mp4"',
                "#EXT-X-INDEPENDENT-SEGMENTS", "#EXTINF:4.000000,", "#EXTINF:1.000000,", "#EXT-X-ENDLIST"):
        assert tag in text
    iframes = hls.iframe_playlist(m)
    assert "#EXT-X-I-FRAMES-ONLY" in iframes and "#EXT-X-BYTERANGE:40000@24" in iframes


def test_multivariant_includes_audio_in_bandwidth_and_starts_near_2mbps():
    v1, v2 = fake_media("1080p", size=3_000_000), fake_media("540p", size=1_000_000)
    a = fake_media("audio", "audio", seg_dur=192000, ts=48000, size=64_000)
    text = hls.multivariant([(v1, Fraction(30)), (v2, Fraction(30000, 1001))], a)
    lines = text.splitlines()
    assert lines[:3] == ["#EXTM3U", "#EXT-X-VERSION:7", "#EXT-X-INDEPENDENT-SEGMENTS"]
    assert lines[3].startswith('#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID="audio"') and 'CHANNELS="2"' in lines[3]
    first = lines[4]
    assert first.startswith("#EXT-X-STREAM-INF:") and lines[5] == "540p/index.m3u8"  # ~2 Mb/s first
    v, ar = hls.segment_rates(v2), hls.segment_rates(a)
    assert f"BANDWIDTH={v.peak + ar.peak}," in first and f"AVERAGE-BANDWIDTH={v.average + ar.average}," in first
    assert 'CODECS="avc1.64001f,mp4a.40.2"' in first and "FRAME-RATE=29.970" in first
    assert "RESOLUTION=1280x720" in first and 'AUDIO="audio"' in first
    assert sum(line.startswith("#EXT-X-I-FRAME-STREAM-INF:") for line in lines) == 2
    video_only = hls.multivariant([(v1, Fraction(30))], None)
    assert "AUDIO=" not in video_only and 'CODECS="avc1.64001f"' in video_only


def test_mpd_is_valid_xml_with_compressed_timelines():
    v, a = fake_media(n=5), fake_media("audio", "audio", seg_dur=192512, ts=48000)
    root = ET.fromstring(dash.mpd([(v, Fraction(30000, 1001))], a))
    ns = {"d": dash.NS}
    assert root.get("type") == "static" and root.get("mediaPresentationDuration") == "PT17.000S"
    rep = root.find("d:Period/d:AdaptationSet/d:Representation", ns)
    assert rep.get("frameRate") == "30000/1001" and rep.get("codecs") == "avc1.64001f"
    s = rep.findall("d:SegmentTemplate/d:SegmentTimeline/d:S", ns)
    assert [(x.get("t"), x.get("d"), x.get("r")) for x in s] == [("0", "61440", "3"), ("245760", "15360", None)]
    audio = root.findall("d:Period/d:AdaptationSet", ns)[1]
    assert audio.get("contentType") == "audio"
    assert audio.find("d:Representation/d:AudioChannelConfiguration", ns).get("value") == "2"


# --- storage and records ---------------------------------------------------------------

def test_output_locations(tmp_path):
    root = str(tmp_path / "media")
    assert storage.output_location("berlin-2026", root) == (f"{root}/berlin-2026", "berlin-2026")
    assert storage.output_location("tours/2026/x", root)[1] == "tours/2026/x"
    assert storage.output_location(f"{root}/a", root) == (f"{root}/a", "a")
    assert storage.output_location("/srv/elsewhere", root) == ("/srv/elsewhere", None)
    assert storage.output_location("s3://bucket/show", root) == ("s3://bucket/show", None)
    for bad in ("../etc", "a/../../b", ".hidden", "a b", ""):
        with pytest.raises(MediaError) as e:
            storage.output_location(bad, root)
        assert e.value.code == "invalid_output"
    assert storage.staging_location("/srv/out/show", "j1") == "/srv/out/.show.staging-j1"


def test_job_record_round_trip_and_public_view():
    rec = JobRecord("abc", JobSpec("/s.mp4", "/m/x", DEFAULT_LADDER.to_json(), public_path="x"),
                    created_at=100.0, started_at=101.0, finished_at=111.5, status=JobStatus.SUCCEEDED,
                    result={"master": "master.m3u8", "mpd": "manifest.mpd"})
    again = JobRecord.from_json(json.loads(json.dumps(rec.to_json())))
    assert again == rec
    view = rec.public("http://h:8000/")
    assert view["wall_s"] == 10.5 and view["queued_s"] == 1.0
    assert view["urls"]["master"] == "http://h:8000/media/x/master.m3u8"
    assert JobStatus.CANCELLED.terminal and not JobStatus.RUNNING.terminal
