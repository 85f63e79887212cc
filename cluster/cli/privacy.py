"""`fandom privacy erase USER`: GDPR erasure through the running archiver."""

from __future__ import annotations

import json

from cluster.settings import RAY_NAMESPACE, Settings


def register(sub) -> None:
    p = sub.add_parser("privacy", help="GDPR requests (erase a fan's messages)")
    psub = p.add_subparsers(dest="privacy_command", required=True, metavar="ACTION")
    e = psub.add_parser("erase", help="remove USER's messages from Redis history and the archive")
    e.add_argument("user", help="the user id (the token's sub)")
    e.add_argument("--address", help="Ray cluster (default: RAY_ADDRESS, else the local one)")
    e.add_argument("--json", action="store_true", help="print the report as one JSON object")
    e.set_defaults(func=erase)


def erase(args) -> int:
    import ray

    from actors.archiver import get_archiver
    from cluster.errors import InvalidInput, Unavailable

    if not 0 < len(args.user) <= 64:
        raise InvalidInput("user must be 1-64 characters", code="invalid_user")
    if not ray.is_initialized():
        address = args.address or Settings.from_env().ray_address or "auto"
        try:
            ray.init(address=address, namespace=RAY_NAMESPACE, logging_level="ERROR")
        except ConnectionError as e:
            raise Unavailable(f"no Ray cluster at {address} ({e}); is `fandom up` running?") from None
    report = ray.get(get_archiver().erase.remote(args.user))
    if args.json:
        print(json.dumps(report))
        return 0
    redis_rows, dataset_rows = report["redis_rows"], report["dataset_rows"]
    print(f"erased {args.user}: {sum(redis_rows.values())} messages from Redis history in "
          f"{len(redis_rows)} rooms, {sum(dataset_rows.values())} rows from the archive "
          f"({report['files_rewritten']} files rewritten, {report['files_deleted']} deleted), "
          f"{report['buffered_rows']} not yet archived, {report['dedup_keys']} dedup keys")
    for room in sorted(set(redis_rows) | set(dataset_rows)):
        print(f"  {room}: redis {redis_rows.get(room, 0)}, archive {dataset_rows.get(room, 0)}")
    return 0
