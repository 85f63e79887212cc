"""`fandom jobs submit|list|status|cancel`: the jobs API of a running cluster, over HTTP.

Token: FANDOM_TOKEN, else an ops token minted from FANDOM_JWT_SECRET (fine for local
development; in production hand out FANDOM_TOKEN from `fandom token --role ops`).
URL: --url, else FANDOM_PUBLIC_URL, else http://127.0.0.1:<FANDOM_HTTP_PORT>.
"""

from __future__ import annotations

import json
import os
import sys
import time

import httpx

from cluster import tokens
from cluster.errors import FandomError
from cluster.settings import Settings

WAIT_POLL_S = 1.0


def register(sub) -> None:
    p = sub.add_parser("jobs", help="submit, list, watch or cancel transcoding jobs via the API")
    p.add_argument("--url", help="API base URL")
    verbs = p.add_subparsers(dest="verb", required=True, metavar="VERB")
    s = verbs.add_parser("submit", help="queue a job")
    s.add_argument("source")
    s.add_argument("output", help="name under the media root, absolute path, or URI")
    s.add_argument("--ladder")
    s.add_argument("--split", choices=["chunk", "rendition"])
    s.add_argument("--chunk-s", type=float)
    s.add_argument("--wait", action="store_true", help="poll until the job ends")
    ls = verbs.add_parser("list", help="jobs, newest first")
    ls.add_argument("--status", choices=["queued", "running", "succeeded", "failed", "cancelled"])
    ls.add_argument("--limit", type=int, default=50)
    st = verbs.add_parser("status", help="one job")
    st.add_argument("id")
    st.add_argument("--wait", action="store_true", help="poll until the job ends")
    c = verbs.add_parser("cancel", help="cancel a queued or running job")
    c.add_argument("id")
    p.set_defaults(func=run)


def client(settings: Settings, url: str | None) -> httpx.Client:
    token = os.environ.get("FANDOM_TOKEN") or tokens.mint(settings.jwt_secret, "cli-ops", role="ops")
    base = url or settings.public_url or f"http://127.0.0.1:{settings.http_port}"
    return httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=30)


def _call(http: httpx.Client, method: str, path: str, **kw) -> dict:
    try:
        r = http.request(method, path, **kw)
    except httpx.HTTPError as e:
        raise FandomError(f"cannot reach the API at {http.base_url}: {e}", code="unavailable") from None
    body = r.json() if r.headers.get("content-type", "").startswith("application/json") else {}
    if r.status_code >= 400:
        raise FandomError(body.get("message", r.text), code=body.get("code", "http_error"),
                          status=r.status_code)
    return body


def run(args) -> int:
    settings = Settings.from_env()
    with client(settings, args.url) as http:
        if args.verb == "submit":
            body = {"source": args.source, "output": args.output, "ladder": args.ladder, "split": args.split,
                    "chunk_s": args.chunk_s}
            job = _call(http, "POST", "/api/jobs", json={k: v for k, v in body.items() if v is not None})
        elif args.verb == "list":
            params = {"limit": args.limit, **({"status": args.status} if args.status else {})}
            print(json.dumps(_call(http, "GET", "/api/jobs", params=params), indent=2))
            return 0
        elif args.verb == "status":
            job = _call(http, "GET", f"/api/jobs/{args.id}")
        else:
            job = _call(http, "DELETE", f"/api/jobs/{args.id}")
        if getattr(args, "wait", False):
            while job["status"] in ("queued", "running"):
                print(f"\r{job['id']} {job['status']} {job['progress'] * 100:5.1f}%", end="",
                      file=sys.stderr, flush=True)
                time.sleep(WAIT_POLL_S)
                job = _call(http, "GET", f"/api/jobs/{job['id']}")
            print(file=sys.stderr)
        print(json.dumps(job, indent=2))
        return 0 if job["status"] != "failed" else 1
