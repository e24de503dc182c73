"""`infiller complete FILE:LINE:COL`: one completion without an editor (base of the daemon and benchmarks)."""

from __future__ import annotations

import argparse
import json
import sys
import time

from server.cli.common import fail, parse_location
from server.model.registry import ModelError
from server.workspace import find_root, open_index


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("complete", help="print the completion at FILE:LINE:COL (1-based)")
    p.add_argument("location", type=parse_location, metavar="FILE:LINE:COL")
    p.add_argument("--root", type=str, help="workspace root (default: nearest project marker)")
    p.add_argument("--model", help="registry model name (default: the registry default)")
    p.add_argument("--json", action="store_true", help="print JSON with latency, tokens and reason")
    p.add_argument("--no-context", action="store_true", help="current file only: no cross-file retrieval")
    p.add_argument("--repeat", type=int, default=1, help="run N times in one process (warm latency)")
    p.add_argument(
        "--reset-cache", action="store_true", help="empty the KV cache before each run (cold, reproducible)"
    )
    p.set_defaults(func=cmd_complete)


def cmd_complete(args: argparse.Namespace) -> int:
    from pathlib import Path

    from server.completion import Completer, CompletionRequest

    loc = args.location
    if not loc.path.is_file():
        return fail(f"no such file: {loc.path}")
    try:
        text = loc.path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        return fail(f"{loc.path} is not UTF-8 text")
    lines = text.split("\n")
    if loc.line >= len(lines):
        return fail(f"{loc.path} has {len(lines)} lines; line {loc.line + 1} is past the end")
    if loc.column > len(lines[loc.line]):
        return fail(
            f"line {loc.line + 1} has {len(lines[loc.line])} characters; "
            f"column {loc.column + 1} is past its end"
        )
    root = Path(args.root).resolve() if args.root else find_root(loc.path)
    start = time.perf_counter()
    index = None if args.no_context else open_index(root)
    index_ms = (time.perf_counter() - start) * 1000
    try:
        load_start = time.perf_counter()
        completer = Completer.load(args.model, root=root, index=index)
        load_ms = (time.perf_counter() - load_start) * 1000
    except ModelError as exc:
        return fail(str(exc))
    request = CompletionRequest(path=loc.path.resolve(), text=text, line=loc.line, column=loc.column)
    runs = []
    for _ in range(max(1, args.repeat)):
        runs.append(completer.complete(request, reset_cache=args.reset_cache))
    result = runs[-1]
    if args.json:
        payload = result.as_json()
        payload["latency_ms"] = {
            **payload["latency_ms"],
            "index_ms": round(index_ms, 1),
            "model_load_ms": round(load_ms, 1),
        }
        if len(runs) > 1:
            payload["runs_total_ms"] = [r.timings["total_ms"] for r in runs]
        print(json.dumps(payload, indent=2))
    elif result.text is None:
        print(f"(no suggestion: {result.reason})", file=sys.stderr)
        return 0
    else:
        print(result.text, flush=True)
        print(
            f"-- {result.model}, {result.mode}, {result.timings['total_ms']:.0f} ms "
            f"({result.tokens['prompt']} prompt tokens, {result.tokens['generated']} generated)",
            file=sys.stderr,
        )
    if index is not None:
        index.close()
    return 0
