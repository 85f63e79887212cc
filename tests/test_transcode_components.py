"""Transcoding components against real ffmpeg and real Redis (no Ray)."""

from __future__ import annotations

import os
import subprocess
import time
from fractions import Fraction

import pytest

from cluster import keys
from cluster.errors import MediaError
from jobs import cmaf, encode, hls, plan, storage
from jobs import ffmpeg as ff
from jobs.ladder import DEFAULT_LADDER, renditions
from jobs.model import JobRecord, JobSpec, JobStatus
from jobs.store import JobStore
from tests.ladder_check import check_rendition, source_facts

FF = ff.ffmpeg_binary()


def make(path, size="640x360", rate="30", seconds=2.0, extra=()):
    subprocess.run([FF, "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi", "-i",
                    f"testsrc2=size={size}:rate={rate}:duration={seconds}", "-c:v", "libx264",
                    "-preset", "ultrafast", "-pix_fmt", "yuv420p", *extra, str(path)], check=True)
    return str(path)


def test_probe_reads_real_banners(tmp_path):
    plain = make(tmp_path / "p.mp4")
    info = ff.probe(FF, plain)
    assert (info.video.width, info.video.height, info.video.fps) == (640, 360, 30) and not info.has_audio
    rotated = str(tmp_path / "rot.mp4")
    subprocess.run([FF, "-hide_banner", "-loglevel", "error", "-y", "-display_rotation", "90",
                    "-i", plain, "-c", "copy", rotated], check=True)
    assert (ff.probe(FF, rotated).video.width, ff.probe(FF, rotated).video.height) == (360, 640)
    ntsc = make(tmp_path / "ntsc.mp4", size="720x480", rate="30000/1001", extra=("-vf", "setsar=8/9"))
    v = ff.probe(FF, ntsc).video
    assert v.fps == Fraction(30000, 1001) and (v.width, v.height) == (640, 480)
    assert ff.probe(FF, ntsc).duration_s == pytest.approx(2.0, abs=0.05)
    with pytest.raises(MediaError) as e:
        ff.probe(FF, str(tmp_path / "missing.mp4"))
    assert e.value.code == "source_not_found"


def test_chunked_ntsc_encode_stitches_without_gaps(tmp_path):
    """Split-and-stitch at 29.97 fps: frame-exact seams, continuous timestamps, IDR grid."""
    src = make(tmp_path / "src.mp4", rate="30000/1001", seconds=10)
    info = ff.probe(FF, src)
    rends = renditions(DEFAULT_LADDER, info.video)
    assert [r.name for r in rends] == ["360p"] and rends[0].gop_frames == 60
    chunks = plan.chunks(info.duration_s, rends[0].fps, 120, 4)
    assert [c.start_frame for c in chunks] == [0, 120, 240]  # two seams
    parts = []
    for c in chunks:
        parts.append(str(tmp_path / f"c{c.index}.mp4"))
        reached = ff.run(encode.video_chunk(FF, src, rends, [parts[-1]], start_frame=c.start_frame,
                                            frames=c.frames, preset="ultrafast"),
                         what="chunk", expected_s=c.seconds(rends[0].fps, info.duration_s))
        assert reached > 0
    (tmp_path / "list.txt").write_text(encode.concat_list(parts))
    ff.run(encode.stitch(FF, str(tmp_path / "list.txt"), str(tmp_path / "st.mp4")), what="stitch")
    out = tmp_path / "ladder" / "360p"
    out.mkdir(parents=True)
    media = cmaf.split(str(tmp_path / "st.mp4"), name="360p", target_s=4,
                       write=lambda name, data: (out / name).write_bytes(data))
    (out / "index.m3u8").write_text(hls.media_playlist(media))
    checked = check_rendition(str(tmp_path / "ladder"), "360p/index.m3u8", "video")
    assert checked["frames"] == source_facts(src)["frames"]
    gaps = [b - a for a, b in zip(checked["keyframe_times"], checked["keyframe_times"][1:])]
    assert all(abs(g - 2.002) < 0.01 for g in gaps)
    assert [round(d, 3) for d, _, _ in checked["playlist"].entries][:2] == [4.004, 4.004]


def test_failed_encode_is_classified(tmp_path):
    bad = tmp_path / "bad.mp4"
    bad.write_text("not a video")
    with pytest.raises(MediaError) as e:
        ff.run([FF, "-hide_banner", "-nostdin", "-i", str(bad), "-f", "null", "-"], what="x")
    assert e.value.code in ("source_corrupt", "source_unreadable", "encode_failed")
    assert "x:" in e.value.message


def test_staging_publish_replaces_and_reports_unwritable(tmp_path):
    out = str(tmp_path / "media" / "show")
    for generation in ("one", "two"):
        staging = storage.prepare_staging(out, f"job-{generation}")
        storage.write(staging, "master.m3u8", generation.encode())
        storage.write(staging, "720p/seg_00001.m4s", b"x")
        assert not os.path.exists(os.path.join(out, "master.m3u8")) or generation == "two"
        storage.publish(staging, out)
        assert open(os.path.join(out, "master.m3u8")).read() == generation
        assert not os.path.exists(staging)
    assert sorted(os.listdir(tmp_path / "media")) == ["show"]  # no staging or old copies left
    (tmp_path / "file").write_text("x")
    with pytest.raises(MediaError) as e:
        storage.check_output(str(tmp_path / "file" / "show"))
    assert e.value.code == "output_not_writable"
    with pytest.raises(MediaError) as e:
        storage.check_source(str(tmp_path / "file" / "nope.mp4"))
    assert e.value.code == "source_not_found"


def test_object_store_paths_copy_playlists_last(tmp_path):
    """The non-local branch (S3 & co): exercised on a filesystem that is not LocalFileSystem."""
    import pyarrow.fs as pafs

    (tmp_path / "bucket").mkdir()
    fs = pafs.SubTreeFileSystem(str(tmp_path / "bucket"), pafs.LocalFileSystem())
    for rel in ("stage/720p/seg_00001.m4s", "stage/master.m3u8", "stage/manifest.mpd"):
        fs.create_dir(os.path.dirname(rel), recursive=True)
        with fs.open_output_stream(rel) as f:
            f.write(rel.encode())
    storage.publish_by_copy(fs, "stage", "show")
    assert fs.get_file_info("stage").type == pafs.FileType.NotFound
    assert sorted(p.name for p in tmp_path.joinpath("bucket/show").rglob("*.*")) == [
        "manifest.mpd", "master.m3u8", "seg_00001.m4s"]
    assert storage.copy_order(["master.m3u8", "720p/index.m3u8", "manifest.mpd", "720p/seg_00001.m4s"]) == [
        "720p/index.m3u8", "720p/seg_00001.m4s", "manifest.mpd", "master.m3u8"]
    storage.download(fs, "show/720p/seg_00001.m4s", str(tmp_path / "copy.m4s"))
    assert (tmp_path / "copy.m4s").read_bytes() == b"stage/720p/seg_00001.m4s"


async def test_job_store_transitions_race_safely(aredis_client):
    store = JobStore(aredis_client, ttl_s=60)
    spec = JobSpec("/s.mp4", "/o", DEFAULT_LADDER.to_json())
    a, b = JobRecord("a", spec, created_at=time.time() - 5), JobRecord("b", spec)
    await store.create(a)
    await store.create(b)
    assert [r.id for r in await store.list()] == ["b", "a"]
    assert await store.update("a", {"status": JobStatus.RUNNING, "started_at": 1.0},
                              allowed=(JobStatus.QUEUED,))
    # A cancel lands first: the job's own "succeeded" must then lose.
    assert await store.update("a", {"status": JobStatus.CANCELLED}, allowed=(JobStatus.QUEUED, JobStatus.RUNNING))
    assert not await store.update("a", {"status": JobStatus.SUCCEEDED}, allowed=(JobStatus.RUNNING,))
    rec = await store.get("a")
    assert rec.status == JobStatus.CANCELLED and rec.started_at == 1.0 and rec.spec == spec
    assert 0 < await aredis_client.ttl(keys.job("a")) <= 60  # terminal records expire
    assert await aredis_client.ttl(keys.job("b")) == -1
    assert await store.active_ids() == ["b"]
    assert [r.id for r in await store.list(status=JobStatus.CANCELLED)] == ["a"]
    await aredis_client.delete(keys.job("a"))  # as if it expired
    assert [r.id for r in await store.list()] == ["b"]
    assert await aredis_client.zrange(keys.JOBS_INDEX, 0, -1) == [b"b"]
    assert await store.update("missing", {"progress": 0.5}) is False
