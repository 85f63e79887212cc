"""The `fandom` command. Each area registers its subcommands from its own module."""

from __future__ import annotations

import argparse
import logging
import sys

from cluster.errors import FandomError

# Areas, in the order `fandom --help` lists them. Each module has register(subparsers).
COMMANDS = ["cluster.cli.up", "cluster.cli.token", "cluster.cli.config", "cluster.cli.transcode",
            "cluster.cli.jobs", "cluster.cli.schedule", "cluster.cli.capacity",
            "cluster.cli.analytics", "cluster.cli.privacy"]


def build_parser() -> argparse.ArgumentParser:
    import importlib

    parser = argparse.ArgumentParser(
        prog="fandom", description="Live-concert fan platform on Ray: chat, transcoding, "
        "scheduled capacity, analytics.")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return args.func(args) or 0
    except FandomError as e:
        print(f"error[{e.code}]: {e.message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
