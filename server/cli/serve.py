"""`infiller serve`: run the language server over stdio (what editors start) or TCP."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from pathlib import Path

from server.cli.common import fail

log = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="run the language server (stdio by default)")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--stdio", action="store_true", help="talk JSON-RPC over stdin/stdout (default)")
    mode.add_argument("--tcp", metavar="HOST:PORT", help="listen on a TCP socket instead")
    p.add_argument("--model", help="registry model to load when the client does not name one")
    p.add_argument("--log-file", help="write the server log here as well as to stderr")
    # For protocol tests only: MODULE:ATTR naming a `(model) -> Runtime` factory (a fake engine).
    p.add_argument("--fake-engine", help=argparse.SUPPRESS)
    p.set_defaults(func=cmd_serve)


def _parse_tcp(spec: str) -> tuple[str, int]:
    host, _, port = spec.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"expected HOST:PORT, got {spec!r}")
    return host, int(port)


def cmd_serve(args: argparse.Namespace) -> int:
    from server.lsp.server import build_server

    if args.log_file:
        Path(args.log_file).parent.mkdir(parents=True, exist_ok=True)
        handler = logging.FileHandler(args.log_file, encoding="utf-8")
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        logging.getLogger().addHandler(handler)
        logging.getLogger().setLevel(min(logging.getLogger().level, logging.INFO))
    factory = None
    if args.fake_engine:
        module_name, _, attr = args.fake_engine.partition(":")
        factory = getattr(importlib.import_module(module_name), attr)
    server = build_server(factory)
    server.default_model = args.model
    if args.tcp:
        try:
            host, port = _parse_tcp(args.tcp)
        except ValueError as exc:
            return fail(str(exc))
        server.start_tcp(host, port)
    else:
        # stdout is the JSON-RPC channel from here on: nothing else may write to it.
        server.start_io(sys.stdin.buffer, sys.stdout.buffer)
    return 0
