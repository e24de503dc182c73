"""`infiller complete FILE:LINE:COL`: one completion without an editor (base of the daemon and benchmarks)."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from server.cli.common import PhaseBar, fail, parse_location, positive_int
from server.model.process import ModelProcessDied
from server.model.registry import ModelError
from server.model.selftest import NoWorkingConfiguration
from server.workspace import find_root


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("complete", help="print the completion at FILE:LINE:COL (1-based)")
    p.add_argument("location", type=parse_location, metavar="FILE:LINE:COL")
    p.add_argument("--root", type=str, help="workspace root (default: nearest project marker)")
    p.add_argument("--model", help="registry model name (default: the registry default)")
    p.add_argument("--json", action="store_true", help="print JSON with latency, tokens and reason")
    p.add_argument("--no-context", action="store_true", help="current file only: no cross-file retrieval")
    p.add_argument("--repeat", type=positive_int, default=1, help="run N times in one process (warm latency)")
    p.add_argument(
        "--reset-cache", action="store_true", help="empty the KV cache before each run (cold, reproducible)"
    )
    p.add_argument(
        "--no-daemon", action="store_true", help="load the model here even when `infiller daemon` is running"
    )
    p.set_defaults(func=cmd_complete)


def cmd_complete(args: argparse.Namespace) -> int:
    from server.request import CompletionContext
    from server.session import ModelChoice, Session

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
    if not args.no_daemon:
        served = _via_daemon(args, loc.path.resolve(), text, root)
        if served is not None:
            return served
    session = Session()
    start = time.perf_counter()
    if not args.no_context:
        session.open_index(root, watch=False)
    index_ms = (time.perf_counter() - start) * 1000
    try:
        load_start = time.perf_counter()
        bar = PhaseBar(enabled=sys.stderr.isatty())
        session.load_model(ModelChoice(args.model), bar)
        bar.close()
        load_ms = (time.perf_counter() - load_start) * 1000
    except (ModelError, NoWorkingConfiguration, ModelProcessDied) as exc:
        return fail(str(exc))
    completer = session.completer(root, context=not args.no_context)
    assert completer is not None
    request = CompletionContext.at(loc.path.resolve(), text, loc.line, loc.column)
    runs = []
    try:
        for _ in range(max(1, args.repeat)):
            runs.append(completer.complete(request, reset_cache=args.reset_cache))
    except ModelProcessDied as exc:
        return fail(f"{exc} (run `infiller doctor` to see which configurations run on this machine)")
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
    session.close()
    return 0


def _via_daemon(args: argparse.Namespace, path: Path, text: str, root: Path) -> int | None:
    """Complete through a running daemon (warm: no model load); None when no daemon is up."""
    from server.daemon import client

    base = client.find_daemon(model=args.model)
    if base is None:
        return None
    loc = args.location
    try:
        runs = [
            client.complete(
                base,
                path,
                text,
                loc.line,
                loc.column,
                root=root,
                context=not args.no_context,
                reset_cache=args.reset_cache,
            )
            for _ in range(max(1, args.repeat))
        ]
    except client.DaemonError as exc:
        return fail(str(exc))
    payload = runs[-1]
    if args.json:
        payload["daemon"] = base
        if len(runs) > 1:
            payload["runs_total_ms"] = [r["latency_ms"]["total_ms"] for r in runs]
        print(json.dumps(payload, indent=2))
    elif payload["completion"] is None:
        print(f"(no suggestion: {payload['reason']})", file=sys.stderr)
    else:
        print(payload["completion"], flush=True)
        total_ms = payload["latency_ms"]["total_ms"]
        print(f"-- {payload['model']} via {base}, {total_ms:.0f} ms", file=sys.stderr)
    return 0
