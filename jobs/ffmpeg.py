"""Running ffmpeg: which binary, how its failures read, progress reporting.

The argument lists come from jobs/encode.py; this module only executes them.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Sequence

from cluster.children import die_with_parent
from cluster.errors import MediaError
from jobs.probe import SourceInfo, parse_banner
from jobs.progress import ProgressParser

PROGRESS_ARGS = ["-progress", "pipe:1", "-nostats"]


def ffmpeg_binary(configured: str = "") -> str:
    """FANDOM_FFMPEG, else `ffmpeg` on PATH, else the one in the imageio-ffmpeg wheel."""
    if configured:
        return configured
    found = shutil.which("ffmpeg")
    if found:
        return found
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


def classify(stderr: str, *, what: str) -> MediaError:
    """A person-readable MediaError for a failed ffmpeg run, from its stderr."""
    tail = " | ".join(line.strip() for line in stderr.strip().splitlines()[-4:])[-600:]
    if "Permission denied" in stderr or "Read-only file system" in stderr:
        return MediaError(f"{what}: cannot write output ({tail})", code="output_not_writable")
    if "No space left on device" in stderr:
        return MediaError(f"{what}: disk full ({tail})", code="output_not_writable")
    if "No such file or directory" in stderr and "Error opening input" in stderr:
        return MediaError(f"{what}: source disappeared ({tail})", code="source_not_found")
    if "partial file" in stderr or "corrupt input packet" in stderr or "moov atom not found" in stderr:
        return MediaError(f"{what}: the source is truncated or damaged ({tail})", code="source_corrupt")
    if ("Invalid data found" in stderr or "error while decoding" in stderr
            or "corrupt decoded frame" in stderr):
        return MediaError(f"{what}: the source has undecodable frames ({tail})", code="source_corrupt")
    return MediaError(f"{what}: ffmpeg failed ({tail})", code="encode_failed", status=500)


def run(args: Sequence[str], *, what: str, expected_s: float = 0.0,
        on_progress: Callable[[float], None] | None = None) -> float:
    """Run ffmpeg to completion; returns the output time it reached (seconds).

    ``args`` starts with the binary. Raises MediaError (classified) on a non-zero exit.
    """
    with tempfile.TemporaryFile("w+", encoding="utf-8", errors="replace") as err:
        # stderr to a file, not a pipe: ffmpeg can print a lot and must never block on it.
        # -progress is a global option: it must come before the first output.
        proc = subprocess.Popen([args[0], *PROGRESS_ARGS, *args[1:]],
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=err,
                                text=True, preexec_fn=die_with_parent)
        parser = ProgressParser(expected_s)
        try:
            assert proc.stdout is not None
            for line in proc.stdout:
                if parser.feed(line) and on_progress is not None:
                    on_progress(parser.fraction)
            code = proc.wait()
        except BaseException:  # cancelled (KeyboardInterrupt from ray.cancel) or crashed
            proc.kill()
            proc.wait()
            raise
        if code != 0:
            err.seek(0)
            raise classify(err.read(), what=what)
    return parser.out_time_s


def probe(binary: str, source: str) -> SourceInfo:
    """SourceInfo of a local file (or anything ffmpeg opens), via ``ffmpeg -i``."""
    if not os.path.exists(source):
        raise MediaError(f"{source}: no such file", code="source_not_found")
    if os.path.getsize(source) == 0:
        raise MediaError(f"{source} is empty (0 bytes)", code="source_empty")
    done = subprocess.run([binary, "-hide_banner", "-nostdin", "-i", source],
                          capture_output=True, text=True, errors="replace", timeout=120,
                          preexec_fn=die_with_parent)
    return parse_banner(done.stderr, source=os.path.basename(source))
