"""`fandom token`: mint a signed token with the configured secret (development, tests)."""

from __future__ import annotations

from cluster import tokens
from cluster.settings import Settings


def register(sub) -> None:
    p = sub.add_parser("token", help="mint a signed fan/ops token (JWT)")
    p.add_argument("--user", required=True, help="user id (the token's sub)")
    p.add_argument("--role", choices=tokens.ROLES, default="fan")
    p.add_argument("--rooms", default="", help="comma-separated private rooms ($name) it may join")
    p.add_argument("--ttl", type=int, default=3600, help="lifetime in seconds (default 3600)")
    p.set_defaults(func=run)


def run(args) -> int:
    settings = Settings.from_env()
    for w in settings.warnings:
        print(f"WARNING: {w}", file=__import__("sys").stderr)
    rooms = [r for r in args.rooms.split(",") if r]
    print(tokens.mint(settings.jwt_secret, args.user, role=args.role, rooms=rooms or None,
                      ttl_s=args.ttl))
    return 0
