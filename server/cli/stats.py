"""`infiller stats`: the local completion statistics the server keeps (nothing leaves the machine)."""

from __future__ import annotations

import argparse
import json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("stats", help="show local completion statistics (acceptance, latency, cache hits)")
    p.add_argument("--json", action="store_true", help="print the JSON summary")
    p.add_argument("--reset", action="store_true", help="delete the statistics file")
    p.add_argument("--path", action="store_true", help="print the statistics file's path")
    p.set_defaults(func=cmd_stats)


def cmd_stats(args: argparse.Namespace) -> int:
    from server.stats import format_summary, load, stats_path

    path = stats_path()
    if args.path:
        print(path)
        return 0
    if args.reset:
        path.unlink(missing_ok=True)
        print(f"removed {path}")
        return 0
    summary = load(path).summary()
    if args.json:
        print(json.dumps(summary, indent=2))
    elif not path.is_file():
        print(f"no statistics yet ({path} does not exist): they are recorded while `infiller serve` runs")
    else:
        print(format_summary(summary))
    return 0
