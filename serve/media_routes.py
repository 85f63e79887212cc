"""Published ladders over HTTP: /media/<output name>/master.m3u8 and everything it names.

Public (players fetch it), with the MIME types players check, byte ranges (I-frame
playlists address IDRs inside segments), CORS for MSE players on other origins, and
cache headers a CDN can honour: segments and init files for a day, manifests briefly
(a ladder republished to the same name replaces them; purge the CDN when you do).
"""

from __future__ import annotations

import os

from fastapi import APIRouter, Depends, Response
from fastapi.responses import FileResponse

from cluster.errors import NotFoundError
from jobs.submit import media_dir
from serve.deps import ApiState, api_state

router = APIRouter(tags=["media"])

MIME_TYPES = {
    ".m3u8": "application/vnd.apple.mpegurl",
    ".m4s": "video/iso.segment",
    ".mp4": "video/mp4",
    ".mpd": "application/dash+xml",
    ".json": "application/json",
}
SEGMENT_CACHE = "public, max-age=86400"
MANIFEST_CACHE = "public, max-age=60"
CORS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Expose-Headers": "Content-Length, Content-Range, Accept-Ranges, ETag",
}


def _resolve(root: str, path: str) -> str:
    parts = path.split("/")
    # Hidden names are staging/old ladders mid-publish: never served.
    if any(p in ("", ".", "..") or p.startswith(".") for p in parts):
        raise NotFoundError("no such media file", code="media_not_found")
    full = os.path.realpath(os.path.join(root, *parts))
    root = os.path.realpath(root)
    if os.path.commonpath([root, full]) != root or not os.path.isfile(full):
        raise NotFoundError("no such media file", code="media_not_found")
    return full


@router.head("/media/{path:path}", include_in_schema=False)  # same handler; one OpenAPI entry
@router.get("/media/{path:path}",
            responses={200: {"description": "the file"}, 206: {"description": "a byte range"},
                       404: {"description": "no such file"}})
async def media(path: str, state: ApiState = Depends(api_state)) -> FileResponse:
    """A file of a published ladder (Range requests supported)."""
    full = _resolve(media_dir(state.settings), path)
    ext = os.path.splitext(full)[1]
    if ext not in MIME_TYPES:
        raise NotFoundError("no such media file", code="media_not_found")
    cache = SEGMENT_CACHE if ext in (".m4s", ".mp4") else MANIFEST_CACHE
    return FileResponse(full, media_type=MIME_TYPES[ext], headers={"Cache-Control": cache, **CORS})


@router.options("/media/{path:path}", include_in_schema=False)
async def media_preflight(path: str) -> Response:
    return Response(status_code=204, headers={
        **CORS, "Access-Control-Allow-Methods": "GET, HEAD, OPTIONS",
        "Access-Control-Allow-Headers": "Range", "Access-Control-Max-Age": "86400"})
