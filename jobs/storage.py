"""Sources and outputs: local paths by default, or any ``pyarrow.fs`` URI (s3://, gs://...).

A ladder is written under a staging prefix beside its final location and moved into
place only when every playlist exists, so nobody ever sees half a ladder:
locally one ``rename`` (old ladder swapped out, then deleted); on object stores the
files are copied with the top-level playlists last, then the staging prefix removed.
"""

from __future__ import annotations

import os
import posixpath
import re
import shutil
import tempfile
import uuid
from pathlib import Path

import pyarrow.fs as pafs

from cluster.errors import MediaError

_SCHEME = re.compile(r"^[a-z][a-z0-9+.-]*://")
_SAFE_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*(/[A-Za-z0-9_][A-Za-z0-9_.-]*)*$")
TOP_LEVEL_LAST = ("master.m3u8", "manifest.mpd")


def is_uri(location: str) -> bool:
    return bool(_SCHEME.match(location)) and not location.startswith("file://")


def resolve(location: str) -> tuple[pafs.FileSystem, str]:
    """(filesystem, path in it) for a local path, file:// URI or pyarrow.fs URI."""
    if is_uri(location):
        try:
            return pafs.FileSystem.from_uri(location)
        except (ValueError, OSError) as e:  # pyarrow's ArrowInvalid is a ValueError
            raise MediaError(f"cannot open {location}: {e}", code="storage_error") from None
    if location.startswith("file://"):
        location = location[len("file://"):]
    return pafs.LocalFileSystem(), os.path.abspath(location)


def output_location(output: str, media_dir: str) -> tuple[str, str | None]:
    """(resolved output, path under the media root or None) for an API/CLI ``output``.

    A plain relative name (``concert-42`` or ``tours/2026/berlin``) lives under the media
    root and is served at /media/<name>/; an absolute path or URI is used as given."""
    if is_uri(output):
        return output, None  # resolved (and reached) only when written
    if output.startswith(("/", "file://")):
        path = resolve(output)[1]
        root = os.path.abspath(media_dir)
        inside = os.path.commonpath([root, path]) == root and path != root
        return path, os.path.relpath(path, root) if inside else None
    name = output.strip("/")
    if not _SAFE_NAME.match(name) or any(p in ("..", ".") for p in name.split("/")):
        raise MediaError(f"output {output!r}: use a name of A-Z a-z 0-9 _ . - (folders with /), "
                         "an absolute path or a URI", code="invalid_output")
    return os.path.join(os.path.abspath(media_dir), name), name


def check_source(location: str) -> None:
    """source_not_found / source_empty, checked without reading the file."""
    fs, path = resolve(location)
    try:
        info = fs.get_file_info(path)
    except OSError as e:
        raise MediaError(f"cannot reach source {location}: {e}", code="source_not_found") from None
    if info.type == pafs.FileType.NotFound:
        raise MediaError(f"source {location} does not exist", code="source_not_found")
    if info.type != pafs.FileType.File:
        raise MediaError(f"source {location} is not a file", code="source_not_found")
    if info.size == 0:
        raise MediaError(f"source {location} is empty (0 bytes)", code="source_empty")


def local_source(location: str, scratch: str, job_id: str) -> str:
    """A local path ffmpeg can open: the file itself, or a node-local copy of a URI."""
    if not is_uri(location):
        return resolve(location)[1]
    fs, path = resolve(location)
    cache = Path(scratch) / f"src-{job_id}"
    cache.mkdir(parents=True, exist_ok=True)
    target = cache / ("source" + Path(path).suffix)
    if not target.exists():  # one download per node per job
        download(fs, path, str(target))
    return str(target)


def download(fs: pafs.FileSystem, path: str, target: str) -> None:
    """Copy a file out of ``fs``; the rename makes a half-done copy invisible."""
    tmp = os.path.join(os.path.dirname(target), f".{uuid.uuid4().hex}")
    with fs.open_input_stream(path) as src, open(tmp, "wb") as dst:
        shutil.copyfileobj(src, dst, 8 << 20)
    os.replace(tmp, target)


def staging_location(output: str, job_id: str) -> str:
    """Where a job writes before publishing: a hidden sibling of the output."""
    parent, name = posixpath.split(output.rstrip("/"))
    return posixpath.join(parent, f".{name}.staging-{job_id}")


def prepare_staging(output: str, job_id: str) -> str:
    """Create the staging prefix (proving the output location is writable); return it."""
    staging = staging_location(output, job_id)
    fs, path = resolve(staging)
    try:
        fs.create_dir(path, recursive=True)
        with fs.open_output_stream(posixpath.join(path, ".write-test")) as f:
            f.write(b"ok")
        fs.delete_file(posixpath.join(path, ".write-test"))
    except (OSError, PermissionError) as e:
        raise MediaError(f"cannot write the output location {output}: {e}",
                         code="output_not_writable") from None
    return staging


def check_output(output: str) -> None:
    """output_not_writable unless a staging prefix can be created next to ``output``."""
    staging = prepare_staging(output, f"check-{uuid.uuid4().hex[:8]}")
    discard(staging)


def write(prefix: str, relpath: str, data: bytes | memoryview) -> None:
    fs, path = resolve(prefix)
    target = posixpath.join(path, relpath)
    fs.create_dir(posixpath.dirname(target), recursive=True)
    with fs.open_output_stream(target) as f:
        f.write(data)


def discard(prefix: str) -> None:
    fs, path = resolve(prefix)
    try:
        fs.delete_dir(path)
    except (FileNotFoundError, OSError):
        pass


def publish(staging: str, output: str) -> None:
    """Move a complete staged ladder to ``output``, replacing any ladder already there."""
    fs, src = resolve(staging)
    _, dst = resolve(output)
    if isinstance(fs, pafs.LocalFileSystem):
        old = None
        if os.path.lexists(dst):
            old = staging_location(dst, "old-" + uuid.uuid4().hex[:8])
            os.rename(dst, old)
        os.rename(src, dst)
        if old:
            shutil.rmtree(old, ignore_errors=True)
        return
    publish_by_copy(fs, src, dst)


def publish_by_copy(fs: pafs.FileSystem, src: str, dst: str) -> None:
    """Object stores cannot rename a prefix: copy, top-level playlists last, then delete."""
    rels = [posixpath.relpath(i.path, src) for i in fs.get_file_info(
        pafs.FileSelector(src, recursive=True)) if i.type == pafs.FileType.File]
    for rel in copy_order(rels):
        target = posixpath.join(dst, rel)
        fs.create_dir(posixpath.dirname(target), recursive=True)
        fs.copy_file(posixpath.join(src, rel), target)
    fs.delete_dir(src)


def copy_order(relpaths: list[str]) -> list[str]:
    """Segments and rendition playlists first, the entry points (master, MPD) last."""
    return sorted(relpaths, key=lambda rel: (rel in TOP_LEVEL_LAST, rel))


def scratch_dir(configured: str) -> str:
    path = configured or os.path.join(tempfile.gettempdir(), "fandom-transcode")
    os.makedirs(path, exist_ok=True)
    return path
