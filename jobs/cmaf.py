"""Cut a fragmented MP4 into CMAF segments and measure them. Pure bytes in, facts out.

The stitched rendition (jobs/encode.py) is ``ftyp moov (moof mdat)*``, one fragment
per GOP (video) or per ~segment (audio), ``default-base-is-moof`` so fragments move
between files untouched. ``split`` writes ``init.mp4`` (ftyp+moov) and
``seg_00001.m4s``... (``styp`` + whole fragments) and returns what the playlists need:
exact durations from ``tfdt``/``trun``, byte sizes, and the byte range of every IDR
(moof through the end of its first sample) for the I-frame playlist.
"""

from __future__ import annotations

import mmap
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from cluster.errors import MediaError

INIT_NAME = "init.mp4"
STYP = struct.pack(">I4s4sI4s4s", 24, b"styp", b"msdh", 0, b"msdh", b"cmfs")
_CONTAINERS = {b"moov", b"trak", b"mdia", b"minf", b"stbl", b"mvex", b"moof", b"traf"}


def segment_name(index: int) -> str:
    """File name of the 1-based segment ``index`` (the DASH template mirrors it)."""
    return f"seg_{index:05d}.m4s"


DASH_MEDIA_TEMPLATE = "seg_$Number%05d$.m4s"


@dataclass
class Track:
    kind: str                 # "video" | "audio"
    timescale: int
    codecs: str               # RFC 6381, e.g. avc1.640028 / mp4a.40.2
    width: int = 0
    height: int = 0
    channels: int = 0
    sample_rate: int = 0
    default_duration: int = 0
    default_size: int = 0
    default_flags: int = 0


@dataclass
class Segment:
    uri: str
    start: int         # timescale units (tfdt of its first fragment)
    duration: int      # timescale units
    size: int          # bytes of the .m4s file
    first_is_sync: bool


@dataclass
class IFrame:
    uri: str
    offset: int        # byte offset in the segment file (at its moof)
    length: int        # moof + mdat header + the IDR's own bytes
    start: int         # timescale units
    duration: int = 0  # until the next IDR (or the end)


@dataclass
class Media:
    """A packaged rendition: what jobs/hls.py and jobs/dash.py write playlists from."""
    name: str
    track: Track
    segments: list[Segment] = field(default_factory=list)
    iframes: list[IFrame] = field(default_factory=list)

    @property
    def duration_s(self) -> float:
        return sum(s.duration for s in self.segments) / self.track.timescale

    def to_json(self) -> dict:
        return {"name": self.name, "track": vars(self.track),
                "segments": [vars(s) for s in self.segments],
                "iframes": [vars(i) for i in self.iframes]}

    @classmethod
    def from_json(cls, d: dict) -> Media:
        return cls(d["name"], Track(**d["track"]), [Segment(**s) for s in d["segments"]],
                   [IFrame(**i) for i in d["iframes"]])


# --- box reading -------------------------------------------------------------------------

def boxes(buf, start: int = 0, end: int | None = None) -> Iterator[tuple[bytes, int, int, int]]:
    """(type, offset, size, header size) of each box in buf[start:end]."""
    end = len(buf) if end is None else end
    off = start
    while off + 8 <= end:
        size, kind = struct.unpack_from(">I4s", buf, off)
        header = 8
        if size == 1:
            size, header = struct.unpack_from(">Q", buf, off + 8)[0], 16
        elif size == 0:
            size = end - off
        if size < header or off + size > end:
            raise MediaError(f"broken MP4 box {kind!r} at byte {off}", code="package_failed", status=500)
        yield bytes(kind), off, size, header
        off += size


def _child(buf, off: int, size: int, header: int, kind: bytes, skip: int = 0):
    for k, o, s, h in boxes(buf, off + header + skip, off + size):
        if k == kind:
            return o, s, h
    return None


def _path(buf, off: int, size: int, header: int, *kinds: bytes):
    found = (off, size, header)
    for kind in kinds:
        found = _child(buf, *found, kind)
        if found is None:
            return None
    return found


def parse_init(buf) -> Track:
    """The single track of an init segment (ftyp+moov)."""
    moov = next(((o, s, h) for k, o, s, h in boxes(buf) if k == b"moov"), None)
    if moov is None:
        raise MediaError("no moov box in the packaged rendition", code="package_failed", status=500)
    mdhd = _path(buf, *moov, b"trak", b"mdia", b"mdhd")
    hdlr = _path(buf, *moov, b"trak", b"mdia", b"hdlr")
    stsd = _path(buf, *moov, b"trak", b"mdia", b"minf", b"stbl", b"stsd")
    if not (mdhd and hdlr and stsd):
        raise MediaError("init segment lacks mdhd/hdlr/stsd", code="package_failed", status=500)
    o = mdhd[0] + mdhd[2]
    timescale = struct.unpack_from(">I", buf, o + (20 if buf[o] == 1 else 12))[0]
    handler = bytes(buf[hdlr[0] + hdlr[2] + 8: hdlr[0] + hdlr[2] + 12])
    entry = next(boxes(buf, stsd[0] + stsd[2] + 8, stsd[0] + stsd[1]))
    kind, eo, es, eh = entry
    track = Track(kind="video" if handler == b"vide" else "audio", timescale=timescale, codecs="")
    if kind == b"avc1":
        track.width, track.height = struct.unpack_from(">HH", buf, eo + eh + 24)
        avcc = _child(buf, eo, es, eh, b"avcC", skip=78)
        if avcc is None:
            raise MediaError("avc1 entry without avcC", code="package_failed", status=500)
        p = avcc[0] + avcc[2]
        track.codecs = "avc1.{:02x}{:02x}{:02x}".format(*buf[p + 1: p + 4])
    elif kind == b"mp4a":
        track.channels = struct.unpack_from(">H", buf, eo + eh + 16)[0]
        track.sample_rate = struct.unpack_from(">I", buf, eo + eh + 24)[0] >> 16
        track.codecs = f"mp4a.40.{_aac_object_type(buf, eo, es, eh)}"
    else:
        raise MediaError(f"unexpected sample entry {kind!r} (want avc1 or mp4a)",
                         code="package_failed", status=500)
    trex = _path(buf, *moov, b"mvex", b"trex")
    if trex:
        (track.default_duration, track.default_size,
         track.default_flags) = struct.unpack_from(">III", buf, trex[0] + trex[2] + 12)
    return track


def _aac_object_type(buf, eo: int, es: int, eh: int) -> int:
    esds = _child(buf, eo, es, eh, b"esds", skip=28)
    if esds is None:
        return 2
    data = bytes(buf[esds[0] + esds[2] + 4: esds[0] + esds[1]])
    i = 0
    while i < len(data):  # walk descriptors: tag, varint length; stop at DecoderSpecificInfo
        tag, i = data[i], i + 1
        length = 0
        for _ in range(4):
            b, i = data[i], i + 1
            length = (length << 7) | (b & 0x7F)
            if not b & 0x80:
                break
        if tag == 0x03:
            flags = data[i + 2]
            i += 3 + (2 if flags & 0x80 else 0) + (2 if flags & 0x20 else 0)
            if flags & 0x40:
                i += 1 + data[i]
        elif tag == 0x04:
            i += 13
        elif tag == 0x05:
            return data[i] >> 3
        else:
            i += length
    return 2


# --- fragments ---------------------------------------------------------------------------

@dataclass
class _Fragment:
    offset: int            # of the moof in the source file
    size: int              # moof + following mdat
    start: int             # tfdt
    duration: int
    first_is_sync: bool
    first_sample_end: int  # relative to the moof: end of the first sample's bytes


def _fragment(buf, moof: tuple[int, int, int], mdat_end: int, track: Track) -> _Fragment:
    traf = _child(buf, *moof, b"traf")
    tfhd = traf and _child(buf, *traf, b"tfhd")
    tfdt = traf and _child(buf, *traf, b"tfdt")
    if not (traf and tfhd and tfdt):
        raise MediaError("fragment without traf/tfhd/tfdt", code="package_failed", status=500)
    p = tfhd[0] + tfhd[2]
    flags = int.from_bytes(buf[p + 1: p + 4], "big")
    q = p + 8 + (8 if flags & 0x01 else 0) + (4 if flags & 0x02 else 0)
    dflt = {"duration": track.default_duration, "size": track.default_size, "flags": track.default_flags}
    for bit, key in ((0x08, "duration"), (0x10, "size"), (0x20, "flags")):
        if flags & bit:
            dflt[key] = struct.unpack_from(">I", buf, q)[0]
            q += 4
    p = tfdt[0] + tfdt[2]
    start = struct.unpack_from(">Q" if buf[p] == 1 else ">I", buf, p + 4)[0]
    duration, first_sync, first_end = 0, None, 0
    for kind, o, s, h in boxes(buf, traf[0] + traf[2], traf[0] + traf[1]):
        if kind != b"trun":
            continue
        p = o + h
        tflags = int.from_bytes(buf[p + 1: p + 4], "big")
        count = struct.unpack_from(">I", buf, p + 4)[0]
        p += 8
        data_offset = 0
        if tflags & 0x01:
            data_offset = struct.unpack_from(">i", buf, p)[0]
            p += 4
        first_flags = None
        if tflags & 0x04:
            first_flags = struct.unpack_from(">I", buf, p)[0]
            p += 4
        for i in range(count):
            d, sz, fl = dflt["duration"], dflt["size"], dflt["flags"]
            if tflags & 0x100:
                d, p = struct.unpack_from(">I", buf, p)[0], p + 4
            if tflags & 0x200:
                sz, p = struct.unpack_from(">I", buf, p)[0], p + 4
            if tflags & 0x400:
                fl, p = struct.unpack_from(">I", buf, p)[0], p + 4
            elif i == 0 and first_flags is not None:
                fl = first_flags
            if tflags & 0x800:
                p += 4
            if first_sync is None:
                first_sync = not (fl >> 16) & 1  # sample_is_non_sync_sample
                first_end = data_offset + sz
            duration += d
    return _Fragment(moof[0], mdat_end - moof[0], start, duration, bool(first_sync), first_end)


def split(src_path: str, *, name: str, target_s: float,
          write: Callable[[str, bytes | memoryview], None]) -> Media:
    """Cut ``src_path`` into init + segments via ``write(file name, bytes)``; return Media."""
    with open(src_path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buf:
        top = list(boxes(buf))
        init_end = next((o for k, o, _, _ in top if k == b"moof"), None)
        if init_end is None:
            raise MediaError(f"{name}: no media fragments were produced (empty encode?)",
                             code="package_failed", status=500)
        init = b"".join(bytes(buf[o:o + s]) for k, o, s, _ in top if k in (b"ftyp", b"moov"))
        track = parse_init(init)
        write(INIT_NAME, init)
        frags = []
        for i, (kind, o, s, h) in enumerate(top):
            if kind == b"moof":
                mdat = top[i + 1] if i + 1 < len(top) and top[i + 1][0] == b"mdat" else None
                if mdat is None:
                    raise MediaError(f"{name}: moof without mdat", code="package_failed", status=500)
                frags.append(_fragment(buf, (o, s, h), mdat[1] + mdat[2], track))
        if track.kind == "video" and not all(fr.first_is_sync for fr in frags):
            raise MediaError(f"{name}: a fragment does not start with an IDR frame",
                             code="package_failed", status=500)
        media = Media(name, track)
        for group in _group(frags, round(target_s * track.timescale)):
            uri = segment_name(len(media.segments) + 1)
            pos = len(STYP)
            for fr in group:
                if track.kind == "video" and fr.first_is_sync:
                    media.iframes.append(IFrame(uri, pos, fr.first_sample_end, fr.start))
                pos += fr.size
            write(uri, STYP + b"".join(buf[fr.offset:fr.offset + fr.size] for fr in group))
            media.segments.append(Segment(uri, group[0].start, sum(fr.duration for fr in group),
                                          pos, group[0].first_is_sync))
    end = frags[-1].start + frags[-1].duration
    for a, b in zip(media.iframes, media.iframes[1:] + [None]):
        a.duration = (b.start if b else end) - a.start
    return media


def _group(frags: list[_Fragment], target: int) -> Iterator[list[_Fragment]]:
    """Fragments into segments of about ``target``: cut where a fragment starts at least
    target - half its own length after the segment start, so 2 s GOPs pair into 4 s
    segments and ~4 s audio fragments stand alone, with no drift over hours."""
    group: list[_Fragment] = []
    for fr in frags:
        if group and fr.start - group[0].start >= target - fr.duration / 2:
            yield group
            group = []
        group.append(fr)
    if group:
        yield group
