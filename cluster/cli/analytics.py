"""`fandom analytics`: summaries and plots of the chat archive (reads the Parquet dataset)."""

from __future__ import annotations

import json
import sys

from cluster.errors import NotFoundError
from cluster.settings import Settings


def register(sub) -> None:
    p = sub.add_parser("analytics", help="chat analytics over the Parquet archive")
    asub = p.add_subparsers(dest="analytics_command", required=True, metavar="ACTION")

    s = asub.add_parser("summary", help="messages, chatters, peak minute, top words/emojis/users, lengths")
    _query_args(s, room_required=False)
    s.add_argument("--top", type=int, default=10, help="length of the top-N lists (default 10)")
    s.add_argument("--json", action="store_true", help="print one JSON object instead of tables")
    s.add_argument("--ray", action="store_true",
                   help="compute on the Ray cluster with Ray Data (for archives bigger than memory)")
    s.set_defaults(func=summary)

    pl = asub.add_parser("plot", help="draw messages per minute with the peak marked (PNG)")
    _query_args(pl, room_required=True)
    pl.add_argument("--out", required=True, help="PNG file to write")
    pl.set_defaults(func=plot)


def _query_args(p, room_required: bool) -> None:
    p.add_argument("--room", required=room_required, help="one room (default: every room)")
    p.add_argument("--from", dest="start", help="UTC start, ISO 8601 (inclusive)")
    p.add_argument("--to", dest="end", help="UTC end, ISO 8601 (exclusive)")
    p.add_argument("--data-dir", help="archive location (default FANDOM_DATA_DIR)")


def _query(args):
    from jobs.analytics import Query, parse_time

    settings = Settings.from_env()
    data_dir = args.data_dir or settings.data_dir
    return data_dir, Query(args.room, parse_time(args.start, "--from"), parse_time(args.end, "--to"))


def _summary(data_dir, query, top_n, use_ray):
    from jobs import analytics

    try:
        if use_ray:
            from cluster.up import start_ray

            start_ray(Settings.from_env())
            return analytics.summary_ray(data_dir, query, top_n)
        return analytics.summary(data_dir, query, top_n)
    except FileNotFoundError:
        raise NotFoundError(f"no chat archive under {data_dir} (set FANDOM_DATA_DIR or --data-dir)",
                            code="archive_not_found") from None


def summary(args) -> int:
    from jobs.analytics import as_json

    data_dir, query = _query(args)
    result = _summary(data_dir, query, args.top, args.ray)
    if args.json:
        doc = {"room": query.room, "from": args.start, "to": args.end, **as_json(result)}
        print(json.dumps(doc, ensure_ascii=False))
        return 0
    print(render(result))
    return 0


def render(result) -> str:
    """Human-readable tables of a summary."""
    rows = {r["room"]: r for r in result["time_span"].to_pylist()}
    if not rows:
        return "no messages match"
    peaks = {r["room"]: r for r in result["peak_minute"].to_pylist()}
    chat = {r["room"]: r["chatters"] for r in result["unique_chatters"].to_pylist()}
    pct = {r["room"]: r for r in result["length_percentiles"].to_pylist()}
    out = [_table(["room", "messages", "chatters", "first (UTC)", "last (UTC)", "peak minute",
                   "peak msgs", "len p50", "p90", "p99"],
                  [[room, r["messages"], chat[room], _t(r["first"]), _t(r["last"]),
                    _t(peaks[room]["minute"])[:16], peaks[room]["messages"],
                    f"{pct[room]['p50']:g}", f"{pct[room]['p90']:g}", f"{pct[room]['p99']:g}"]
                   for room, r in sorted(rows.items())])]
    for name, key, count in (("top_chatters", "user", "messages"), ("top_words", "word", "count"),
                             ("top_emojis", "emoji", "count")):
        out.append(_table([name.replace("_", " "), count],
                          [[r[key], r[count]] for r in result[name].to_pylist()]))
    return "\n\n".join(out)


def _t(v) -> str:
    return v.strftime("%Y-%m-%d %H:%M:%S")


def _table(header: list[str], rows: list[list]) -> str:
    cells = [[str(c) for c in header]] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def plot(args) -> int:
    import matplotlib

    matplotlib.use("Agg")  # files only: no display needed
    import matplotlib.pyplot as plt

    from jobs.analytics import messages_per_minute, peak_minutes

    data_dir, query = _query(args)
    try:
        minutes = messages_per_minute(data_dir, query)
    except FileNotFoundError:
        raise NotFoundError(f"no chat archive under {data_dir}", code="archive_not_found") from None
    if minutes.num_rows == 0:
        raise NotFoundError(f"no messages for room {query.room!r} in that range", code="no_messages")
    peak = peak_minutes(minutes).to_pylist()[0]
    xs, ys = minutes["minute"].to_pylist(), minutes["messages"].to_pylist()
    fig, ax = plt.subplots(figsize=(10, 4), dpi=100)
    ax.bar(xs, ys, width=1 / 1440 * 0.9, color="#4C72B0", label="messages per minute")
    ax.bar([peak["minute"]], [peak["messages"]], width=1 / 1440 * 0.9, color="#DD4444",
           label=f"peak {peak['minute']:%H:%M} UTC: {peak['messages']}")
    ax.annotate(f"peak {peak['messages']}", (peak["minute"], peak["messages"]),
                textcoords="offset points", xytext=(0, 6), ha="center", color="#DD4444")
    ax.set_title(f"{query.room}: messages per minute (UTC)")
    ax.set_ylabel("messages")
    ax.set_ylim(0, peak["messages"] * 1.2)
    ax.legend(loc="upper left")
    fig.autofmt_xdate()
    fig.tight_layout()
    fig.savefig(args.out, format="png")
    plt.close(fig)
    print(f"wrote {args.out} ({len(xs)} minutes, peak {peak['messages']} at {peak['minute']:%Y-%m-%d %H:%M} UTC)",
          file=sys.stderr)
    return 0
