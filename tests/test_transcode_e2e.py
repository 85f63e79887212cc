"""The transcoding pool end to end: real ffmpeg, real Ray + Serve, real HTTP, real Redis.

Ladders are verified by tests/ladder_check.py (own playlist parser + PyAV), never by
the project's own code. Sources are short synthetic clips made once per session.
"""

from __future__ import annotations

import glob
import json
import os
import signal
import subprocess
import time

import httpx
import pytest
import redis

from cluster import keys
from jobs.ffmpeg import ffmpeg_binary
from tests.ladder_check import check_ladder, source_facts

pytestmark = pytest.mark.e2e
JOB_TIMEOUT_S = 600


def _make(path: str, *, size: str, rate: str, seconds: float, audio: bool = True,
          extra: tuple[str, ...] = ()) -> str:
    args = [ffmpeg_binary(), "-hide_banner", "-loglevel", "error", "-y",
            "-f", "lavfi", "-i", f"testsrc2=size={size}:rate={rate}:duration={seconds}"]
    if audio:
        args += ["-f", "lavfi", "-i", f"sine=frequency=440:sample_rate=48000:duration={seconds}",
                 "-c:a", "aac", "-b:a", "96k"]
    args += ["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", *extra, path]
    subprocess.run(args, check=True)
    return path


@pytest.fixture(scope="session")
def sources(tmp_path_factory) -> dict[str, str]:
    d = tmp_path_factory.mktemp("sources")
    s = {
        "landscape": _make(f"{d}/land.mp4", size="1920x1080", rate="30", seconds=5),
        "portrait": _make(f"{d}/portrait.mp4", size="1080x1920", rate="30", seconds=3),
        "pal25": _make(f"{d}/pal25.mp4", size="960x540", rate="25", seconds=9),
        "hfr60": _make(f"{d}/hfr60.mp4", size="640x360", rate="60", seconds=3),
        "silent": _make(f"{d}/silent.mp4", size="640x360", rate="30", seconds=3, audio=False),
        "long1080": _make(f"{d}/long1080.mp4", size="1920x1080", rate="30", seconds=10, audio=False),
        "faststart": _make(f"{d}/fs.mp4", size="640x360", rate="30", seconds=4,
                           extra=("-movflags", "+faststart")),
    }
    audio_only = f"{d}/audio.m4a"
    subprocess.run([ffmpeg_binary(), "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi",
                    "-i", "sine=duration=3", "-c:a", "aac", audio_only], check=True)
    s["audio_only"] = audio_only
    s["empty"] = f"{d}/empty.mp4"
    open(s["empty"], "wb").close()
    s["text"] = f"{d}/notes.mp4"
    open(s["text"], "w").write("setlist: intro, encore\n" * 20)
    data = open(s["silent"], "rb").read()
    s["truncated"] = f"{d}/truncated.mp4"  # moov at the end: cut off
    open(s["truncated"], "wb").write(data[: len(data) // 2])
    fs = open(s["faststart"], "rb").read()
    s["corrupt"] = f"{d}/corrupt.mp4"  # moov first, media cut mid-way
    open(s["corrupt"], "wb").write(fs[: len(fs) * 6 // 10])
    return s


def submit(stack, body: dict, role: str = "ops") -> httpx.Response:
    return httpx.post(f"{stack.http}/api/jobs", json=body, headers=stack.auth(role=role), timeout=60)


def wait_job(stack, job_id: str, timeout: float = JOB_TIMEOUT_S) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        job = httpx.get(f"{stack.http}/api/jobs/{job_id}", headers=stack.auth(), timeout=30).json()
        if job["status"] in ("succeeded", "failed", "cancelled"):
            return job
        assert time.monotonic() < deadline, f"job {job_id} still {job['status']} after {timeout}s"
        time.sleep(0.3)


def media_root(stack) -> str:
    return os.path.join(stack.settings.data_dir, "media")


def no_leftovers(stack, name: str) -> None:
    root = media_root(stack)
    assert not os.path.exists(os.path.join(root, name)), "a failed job published output"
    assert not glob.glob(os.path.join(root, f".{name}.*")), "staging left behind"


def test_jobs_api_needs_ops(stack):
    r = httpx.get(f"{stack.http}/api/jobs", headers=stack.auth(role="fan"), timeout=10)
    assert r.status_code == 403 and r.json()["code"] == "forbidden"
    assert httpx.get(f"{stack.http}/api/jobs", timeout=10).status_code == 401
    r = submit(stack, {"source": "/x.mp4", "output": "x"}, role="fan")
    assert r.status_code == 403
    spec = httpx.get(f"{stack.http}/openapi.json", timeout=10).json()
    assert {"/api/jobs", "/api/jobs/{job_id}"} <= set(spec["paths"])
    assert "delete" in spec["paths"]["/api/jobs/{job_id}"]


def test_bad_input_gets_a_code_and_publishes_nothing(stack, sources, tmp_path, unique):
    rejected = {
        "source_not_found": {"source": str(tmp_path / "missing.mp4")},
        "source_empty": {"source": sources["empty"]},
        "unknown_ladder": {"source": sources["silent"], "ladder": "no-such-ladder"},
        "invalid_ladder": {"source": sources["silent"], "ladder": {"rungs": []}},
        "output_not_writable": {"source": sources["silent"],
                                "output": str(tmp_path / "file.txt" / "ladder")},
        "invalid_output": {"source": sources["silent"], "output": "../../etc"},
    }
    (tmp_path / "file.txt").write_text("a file where a directory should be")
    for code, body in rejected.items():
        r = submit(stack, {"output": f"bad-{code}-{unique}", **body})
        assert r.status_code == 422 and r.json()["code"] == code, (code, r.text)
        assert r.json()["message"]
    failing = {"text": "source_unreadable", "truncated": "source_unreadable",
               "corrupt": "source_corrupt", "audio_only": "no_video_stream"}
    ids = {}
    for name in failing:
        r = submit(stack, {"source": sources[name], "output": f"bad-{name}-{unique}"})
        assert r.status_code == 202, r.text
        ids[name] = r.json()["id"]
    for name, code in failing.items():
        job = wait_job(stack, ids[name])
        assert job["status"] == "failed" and job["error"]["code"] == code, (name, job["error"])
        assert len(job["error"]["message"]) > 20 and job["result"] is None
        no_leftovers(stack, f"bad-{name}-{unique}")
    # ... and the pool keeps serving.
    r = submit(stack, {"source": sources["silent"], "output": f"after-bad-{unique}",
                       "ladder": {"rungs": [{"height": 180, "video_kbps": 300}]}})
    assert wait_job(stack, r.json()["id"])["status"] == "succeeded"


LADDERS = {
    # name: (request extras, expected rung heights (short sides))
    "landscape": ({"split": "rendition"}, [1080, 720, 540, 360]),
    "portrait": ({}, [1080, 720, 540, 360]),
    "pal25": ({"chunk_s": 4}, [540, 360]),
    "hfr60": ({}, [360]),
    "silent": ({}, [360]),
}


@pytest.fixture(scope="module")
def ladder_jobs(stack, sources) -> dict[str, dict]:
    """Submit every acceptance source at once (the pool queues them), wait for all."""
    ids = {}
    for name, (extra, _) in LADDERS.items():
        r = submit(stack, {"source": sources[name], "output": f"acceptance/{name}", **extra})
        assert r.status_code == 202, r.text
        ids[name] = r.json()["id"]
    return {name: wait_job(stack, job_id) for name, job_id in ids.items()}


@pytest.mark.parametrize("name", list(LADDERS))
def test_ladder_meets_the_authoring_rules(stack, sources, ladder_jobs, name):
    job = ladder_jobs[name]
    assert job["status"] == "succeeded", job["error"]
    root = os.path.join(media_root(stack), "acceptance", name)
    facts = source_facts(sources[name])
    checked = check_ladder(root, facts)
    assert sorted((min(v["width"], v["height"]) for v in checked["variants"]), reverse=True) == LADDERS[name][1]
    assert checked["audio"] == facts["audio"]
    assert job["progress"] == 1.0 and job["wall_s"] > 0 and job["urls"]["master"].endswith(
        f"/media/acceptance/{name}/master.m3u8")
    plan = job["result"]["plan"]
    if name == "pal25":
        assert plan["chunks"] == 2  # split-and-stitch exercised; frames counted in check_ladder
    if name == "landscape":
        assert len(plan["encode_tasks"]) == 4  # one task per rendition


def test_media_is_served_with_types_ranges_and_cache_headers(stack, ladder_jobs):
    base = f"{stack.http}/media/acceptance/landscape"
    r = httpx.get(f"{base}/master.m3u8", timeout=10)
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/vnd.apple.mpegurl")
    assert "max-age" in r.headers["cache-control"] and r.headers["access-control-allow-origin"] == "*"
    assert httpx.get(f"{base}/manifest.mpd", timeout=10).headers["content-type"].startswith("application/dash+xml")
    init = httpx.get(f"{base}/1080p/init.mp4", timeout=10)
    assert init.headers["content-type"] == "video/mp4"
    seg_path = os.path.join(media_root(stack), "acceptance/landscape/1080p/seg_00001.m4s")
    whole = open(seg_path, "rb").read()
    r = httpx.get(f"{base}/1080p/seg_00001.m4s", headers={"Range": "bytes=100-1099"}, timeout=10)
    assert r.status_code == 206 and r.content == whole[100:1100]
    assert r.headers["content-type"] == "video/iso.segment"
    assert r.headers["content-range"] == f"bytes 100-1099/{len(whole)}"
    assert "max-age=86400" in r.headers["cache-control"]
    for bad in ("../../etc/passwd", "acceptance/%2e%2e/x", "acceptance/landscape/nope.m4s"):
        assert httpx.get(f"{stack.http}/media/{bad}", timeout=10).status_code == 404


def _task_pid(r: redis.Redis, job_id: str, task_prefix: str) -> tuple[str, int] | None:
    for name, raw in r.hgetall(keys.job_tasks(job_id)).items():
        report = json.loads(raw)
        if name.decode().startswith(task_prefix) and 0 < report["progress"] < 0.8:
            return name.decode(), report["pid"]
    return None


def test_worker_killed_mid_encode_is_retried(stack, sources, unique):
    r = submit(stack, {"source": sources["long1080"], "output": f"killed-{unique}",
                       "ladder": {"rungs": [{"height": 1080, "video_kbps": 4000}]}})
    job_id = r.json()["id"]
    rds = redis.Redis.from_url(stack.settings.redis_url)
    deadline = time.monotonic() + JOB_TIMEOUT_S
    found = None
    while found is None:
        assert time.monotonic() < deadline
        found = _task_pid(rds, job_id, "encode-")
        time.sleep(0.05)
    task, pid = found
    os.kill(pid, signal.SIGKILL)  # the Ray worker running ffmpeg, mid-encode
    job = wait_job(stack, job_id)
    assert job["status"] == "succeeded", job["error"]
    after = json.loads(rds.hget(keys.job_tasks(job_id), task))
    assert after["pid"] != pid and after["progress"] == 1.0  # a retry on another worker finished it
    check_ladder(os.path.join(media_root(stack), f"killed-{unique}"), source_facts(sources["long1080"]))


def test_cancel_stops_a_running_job_and_cleans_up(stack, sources, unique):
    r = submit(stack, {"source": sources["long1080"], "output": f"cancelled-{unique}", "split": "rendition"})
    job_id = r.json()["id"]
    deadline = time.monotonic() + JOB_TIMEOUT_S
    while httpx.get(f"{stack.http}/api/jobs/{job_id}", headers=stack.auth(), timeout=10).json()["status"] != "running":
        assert time.monotonic() < deadline
        time.sleep(0.1)
    r = httpx.delete(f"{stack.http}/api/jobs/{job_id}", headers=stack.auth(), timeout=60)
    assert r.status_code == 200 and r.json()["status"] == "cancelled"
    no_leftovers(stack, f"cancelled-{unique}")
    again = httpx.delete(f"{stack.http}/api/jobs/{job_id}", headers=stack.auth(), timeout=60)
    assert again.status_code == 409 and again.json()["code"] == "job_finished"
    listed = httpx.get(f"{stack.http}/api/jobs", params={"status": "cancelled"}, headers=stack.auth(), timeout=10)
    assert job_id in [j["id"] for j in listed.json()["jobs"]]
    missing = httpx.get(f"{stack.http}/api/jobs/nope", headers=stack.auth(), timeout=10)
    assert missing.status_code == 404 and missing.json()["code"] == "job_not_found"


def test_job_survives_the_api_replica_restarting(stack, sources, unique):
    import ray

    r = submit(stack, {"source": sources["hfr60"], "output": f"restart-{unique}"})
    job_id = r.json()["id"]
    replicas = [a for a in ray.util.list_named_actors(all_namespaces=True)
                if "Api" in a["name"] and a["name"].startswith("SERVE_REPLICA")]
    assert replicas
    for a in replicas:
        ray.kill(ray.get_actor(a["name"], namespace=a["namespace"]), no_restart=True)
    deadline = time.monotonic() + JOB_TIMEOUT_S
    while True:  # Serve replaces the replica; the job went on in the pool meanwhile
        try:
            job = httpx.get(f"{stack.http}/api/jobs/{job_id}", headers=stack.auth(), timeout=10)
            if job.status_code == 200 and job.json()["status"] in ("succeeded", "failed"):
                break
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline
        time.sleep(0.3)
    assert job.json()["status"] == "succeeded", job.json()["error"]


def test_pool_actor_restart_resumes_its_jobs(stack, sources, unique):
    import ray

    from cluster.settings import RAY_NAMESPACE
    from jobs.pool import POOL_NAME

    r = submit(stack, {"source": sources["long1080"], "output": f"pool-restart-{unique}",
                       "ladder": {"rungs": [{"height": 360, "video_kbps": 700}]}})
    job_id = r.json()["id"]
    deadline = time.monotonic() + JOB_TIMEOUT_S
    while httpx.get(f"{stack.http}/api/jobs/{job_id}", headers=stack.auth(), timeout=10).json()["status"] != "running":
        assert time.monotonic() < deadline
        time.sleep(0.1)
    ray.kill(ray.get_actor(POOL_NAME, namespace=RAY_NAMESPACE), no_restart=False)
    job = wait_job(stack, job_id)
    assert job["status"] == "succeeded", job["error"]
    assert job["runs"] == 2  # the restarted pool picked it up from Redis and ran it again


def test_cli_transcode_json_and_jobs_commands(stack, sources, tmp_path, monkeypatch, capsys):
    from cluster.cli import main

    monkeypatch.setenv("FANDOM_REDIS_URL", stack.settings.redis_url)
    out = tmp_path / "cli-out"
    assert main(["transcode", sources["silent"], "--out", str(out), "--json",
                 "--ladder", "apple"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["status"] == "succeeded" and result["master"] == str(out / "master.m3u8")
    assert os.path.isfile(result["mpd"]) and result["wall_s"] > 0
    assert [r["name"] for r in result["renditions"]] == ["360p", "234p"]
    assert all(r["average_bps"] > 0 and r["peak_bps"] >= r["average_bps"] for r in result["renditions"])
    check_ladder(str(out), source_facts(sources["silent"]))
    assert main(["transcode", sources["audio_only"], "--out", str(tmp_path / "x"), "--json"]) == 1
    assert json.loads(capsys.readouterr().out)["error"]["code"] == "no_video_stream"

    monkeypatch.setenv("FANDOM_TOKEN", stack.token("ops-cli", role="ops"))
    assert main(["jobs", "--url", stack.http, "submit", sources["silent"], f"cli-{os.getpid()}",
                 "--ladder", "apple", "--wait"]) == 0
    job = json.loads(capsys.readouterr().out)
    assert job["status"] == "succeeded"
    assert main(["jobs", "--url", stack.http, "status", job["id"]]) == 0
    assert json.loads(capsys.readouterr().out)["id"] == job["id"]
    assert main(["jobs", "--url", stack.http, "list"]) == 0
    assert job["id"] in capsys.readouterr().out
    assert main(["jobs", "--url", stack.http, "cancel", job["id"]]) == 2  # already finished
    assert "job_finished" in capsys.readouterr().err
