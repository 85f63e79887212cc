"""An independent checker for a published ladder: its own playlist parsing, PyAV probes.

Deliberately shares no code with jobs/: it reads the files the way a player would and
asserts Apple's HLS authoring rules (FACTS.md) plus the issue's acceptance items.
"""

from __future__ import annotations

import os
import re
import tempfile
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field

import av

_ATTR = re.compile(r'([A-Z0-9-]+)=("[^"]*"|[^,]*)')


def attrs(line: str) -> dict[str, str]:
    return {k: v.strip('"') for k, v in _ATTR.findall(line.split(":", 1)[1])}


@dataclass
class MediaPlaylist:
    tags: list[str] = field(default_factory=list)
    target: int = 0
    map_uri: str = ""
    entries: list[tuple[float, str, tuple[int, int] | None]] = field(default_factory=list)


def read_media(path: str) -> MediaPlaylist:
    pl = MediaPlaylist()
    lines = open(path).read().splitlines()
    assert lines[0] == "#EXTM3U"
    dur, rng = None, None
    for line in lines[1:]:
        if line.startswith("#EXTINF:"):
            dur = float(line[8:].split(",")[0])
        elif line.startswith("#EXT-X-BYTERANGE:"):
            length, _, offset = line[17:].partition("@")
            rng = (int(offset), int(length))
        elif line.startswith("#EXT-X-TARGETDURATION:"):
            pl.target = int(line.split(":")[1])
        elif line.startswith("#EXT-X-MAP:"):
            pl.map_uri = attrs(line)["URI"]
        elif line.startswith("#"):
            pl.tags.append(line)
        elif line:
            pl.entries.append((dur, line, rng))
            dur, rng = None, None
    return pl


def _probe(data: bytes, kind: str) -> dict:
    with tempfile.NamedTemporaryFile(suffix=".mp4") as f:
        f.write(data)
        f.flush()
        with av.open(f.name) as c:
            s = c.streams.video[0] if kind == "video" else c.streams.audio[0]
            cc = s.codec_context
            out = {"codec": cc.name, "tag": s.codec_tag, "profile": cc.profile, "tb": s.time_base,
                   "packets": [(p.dts, p.pts, p.duration, p.is_keyframe) for p in c.demux(s) if p.size]}
            if kind == "video":
                out.update(width=cc.width, height=cc.height, rate=s.average_rate or s.guessed_rate,
                           level=cc.level)
            else:
                out.update(channels=cc.channels, rate=cc.sample_rate)
            return out


def first_frame(data: bytes) -> tuple[bool, int, int]:
    """Decode the first video frame of an init+fragment slice: (keyframe, width, height)."""
    with tempfile.NamedTemporaryFile(suffix=".mp4") as f:
        f.write(data)
        f.flush()
        with av.open(f.name) as c:
            s = c.streams.video[0]
            first_key = None
            for packet in c.demux(s):
                if first_key is None and packet.size:
                    first_key = packet.is_keyframe
                for frame in packet.decode():
                    return bool(first_key and frame.key_frame), frame.width, frame.height
    raise AssertionError("no decodable frame in the I-frame byte range")


def source_facts(path: str) -> dict:
    with av.open(path) as c:
        v = c.streams.video[0] if c.streams.video else None
        frames = sum(1 for p in c.demux(v) if p.size) if v else 0
    with av.open(path) as c:
        has_audio = bool(c.streams.audio)
        v = c.streams.video[0] if c.streams.video else None
        return {"frames": frames, "width": v.codec_context.width if v else 0,
                "height": v.codec_context.height if v else 0,
                "fps": float(v.average_rate) if v else 0, "audio": has_audio}


def check_rendition(root: str, uri: str, kind: str) -> dict:
    """Every rule of one media playlist and its segments; returns measurements."""
    pl = read_media(os.path.join(root, uri))
    folder = os.path.dirname(os.path.join(root, uri))
    assert "#EXT-X-PLAYLIST-TYPE:VOD" in pl.tags and "#EXT-X-ENDLIST" in pl.tags
    version = int(next(t for t in pl.tags if t.startswith("#EXT-X-VERSION:")).split(":")[1])
    assert version >= 6 and pl.map_uri, "fMP4 needs EXT-X-MAP and version >= 6"
    init = open(os.path.join(folder, pl.map_uri), "rb").read()
    info, bits, total, next_dts, keyframe_times = None, 0, 0.0, None, []
    seg_rates = []
    for extinf, seg_uri, _ in pl.entries:
        data = open(os.path.join(folder, seg_uri), "rb").read()
        p = _probe(init + data, kind)
        pk = p["packets"]
        tb = p["tb"]
        dur = float(sum(x[2] for x in pk) * tb)
        assert pk[0][3], f"{seg_uri}: segment does not start with a keyframe"
        assert dur <= pl.target + 0.5, f"{seg_uri}: {dur:.3f}s > target {pl.target} + 0.5"
        assert abs(dur - extinf) < 0.03, f"{seg_uri}: EXTINF {extinf} but media lasts {dur:.4f}"
        if next_dts is not None:
            assert pk[0][0] == next_dts, f"{seg_uri}: timestamps not continuous"
        next_dts = pk[0][0] + sum(x[2] for x in pk)
        if kind == "video":
            keyframe_times += [float(x[0] * tb) for x in pk if x[3]]
        bits += len(data) * 8
        total += dur
        seg_rates.append((dur, len(data) * 8 / dur))
        info = p
    return {"info": info, "playlist": pl, "bits": bits, "duration": total, "init": init,
            "frames": _count_frames(root, uri, pl, init, kind), "keyframe_times": keyframe_times,
            "seg_rates": seg_rates, "folder": folder}


def _count_frames(root, uri, pl, init, kind) -> int:
    folder = os.path.dirname(os.path.join(root, uri))
    return sum(len(_probe(init + open(os.path.join(folder, s), "rb").read(), kind)["packets"])
               for _, s, _ in pl.entries)


def check_ladder(root: str, source: dict) -> dict:
    """Assert the whole ladder at ``root`` against the source's facts; returns a summary."""
    lines = open(os.path.join(root, "master.m3u8")).read().splitlines()
    assert lines[0] == "#EXTM3U" and "#EXT-X-INDEPENDENT-SEGMENTS" in lines
    media = [attrs(x) for x in lines if x.startswith("#EXT-X-MEDIA:")]
    variants = [(attrs(x), lines[i + 1]) for i, x in enumerate(lines) if x.startswith("#EXT-X-STREAM-INF:")]
    iframes = [attrs(x) for x in lines if x.startswith("#EXT-X-I-FRAME-STREAM-INF:")]
    assert variants and len(iframes) == len(variants)
    audio = None
    if source["audio"]:
        assert len(media) == 1 and media[0]["TYPE"] == "AUDIO" and media[0]["CHANNELS"] == "2"
        audio = check_rendition(root, media[0]["URI"], "audio")
        a = audio["info"]
        assert a["codec"] == "aac" and a["profile"] == "LC" and a["channels"] == 2
    else:
        assert not media and not os.path.exists(os.path.join(root, "audio"))
    short = min(source["width"], source["height"])
    portrait = source["height"] > source["width"]
    out = []
    for va, uri in variants:
        for key in ("BANDWIDTH", "AVERAGE-BANDWIDTH", "CODECS", "RESOLUTION", "FRAME-RATE"):
            assert key in va, f"{uri}: STREAM-INF lacks {key}"
        r = check_rendition(root, uri, "video")
        v = r["info"]
        w, h = map(int, va["RESOLUTION"].split("x"))
        assert (v["width"], v["height"]) == (w, h), f"{uri}: RESOLUTION {w}x{h} vs media"
        assert v["tag"] == "avc1" and v["profile"] == "High"
        codecs = va["CODECS"].split(",")
        assert codecs[0] == f"avc1.64{codecs[0][7:9]}{v['level']:02x}"
        assert ("mp4a.40.2" in codecs) == bool(audio) and (va.get("AUDIO") is not None) == bool(audio)
        assert abs(float(va["FRAME-RATE"]) - float(v["rate"])) < 0.01
        assert abs(float(v["rate"]) - min(source["fps"], 60)) < 0.01
        assert min(w, h) <= short and w % 2 == 0 and h % 2 == 0, "rung above the source"
        assert (h > w) == portrait
        assert abs(w / h - source["width"] / source["height"]) < 0.02, "aspect ratio changed"
        assert r["frames"] == source["frames"], f"{uri}: {r['frames']} frames, source has {source['frames']}"
        gaps = [b - a for a, b in zip(r["keyframe_times"], r["keyframe_times"][1:])]
        assert all(abs(g - 2.0) < 0.05 for g in gaps), f"{uri}: IDR spacing {gaps}"
        avg = r["bits"] / r["duration"] + (audio["bits"] / audio["duration"] if audio else 0)
        declared = int(va["AVERAGE-BANDWIDTH"])
        assert abs(avg - declared) <= 0.1 * declared, f"{uri}: measured {avg:.0f} vs {declared}"
        full = [rate for d, rate in r["seg_rates"] if d >= r["playlist"].target / 2]
        a_full = [rate for d, rate in audio["seg_rates"] if d >= 1] if audio else [0]
        assert int(va["BANDWIDTH"]) >= max(full or [0]) + max(a_full) - 1
        out.append({"uri": uri, "width": w, "height": h, "segments": len(r["playlist"].entries)})
    for ia in iframes:
        pl = read_media(os.path.join(root, ia["URI"]))
        assert "#EXT-X-I-FRAMES-ONLY" in pl.tags and pl.entries
        folder = os.path.dirname(os.path.join(root, ia["URI"]))
        init = open(os.path.join(folder, pl.map_uri), "rb").read()
        w, h = map(int, ia["RESOLUTION"].split("x"))
        for _, seg, (offset, length) in pl.entries:
            with open(os.path.join(folder, seg), "rb") as f:
                f.seek(offset)
                key, fw, fh = first_frame(init + f.read(length))
            assert key and (fw, fh) == (w, h)
    check_mpd(root, {v["uri"].split("/")[0]: v["segments"] for v in out},
              audio and len(audio["playlist"].entries))
    return {"variants": out, "audio": bool(audio)}


def check_mpd(root: str, video_segments: dict[str, int], audio_segments: int | None) -> None:
    ns = {"d": "urn:mpeg:dash:schema:mpd:2011"}
    mpd = ET.parse(os.path.join(root, "manifest.mpd")).getroot()
    assert mpd.get("type") == "static"
    seen = {}
    for rep in mpd.iterfind(".//d:Representation", ns):
        tmpl = rep.find("d:SegmentTemplate", ns)
        assert os.path.isfile(os.path.join(root, tmpl.get("initialization")))
        number = int(tmpl.get("startNumber", "1"))
        count = 0
        for s in tmpl.iterfind("d:SegmentTimeline/d:S", ns):
            for _ in range(int(s.get("r", "0")) + 1):
                name = re.sub(r"\$Number%0(\d+)d\$", lambda m: f"{number:0{m.group(1)}d}", tmpl.get("media"))
                assert os.path.isfile(os.path.join(root, name)), f"MPD names missing {name}"
                number += 1
                count += 1
        seen[rep.get("id")] = count
    expected = dict(video_segments)
    if audio_segments:
        expected["audio"] = audio_segments
    assert seen == expected
