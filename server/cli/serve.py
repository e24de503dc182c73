"""`infiller serve`: run the language server over stdio (what editors start) or TCP."""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from pathlib import Path
from typing import BinaryIO

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

    root = logging.getLogger()
    if args.log_file:
        # The file gets INFO; stderr keeps its level (a client that never reads stderr must not
        # fill the pipe and stall the server).
        for existing in root.handlers:
            existing.setLevel(root.level)
        Path(args.log_file).parent.mkdir(parents=True, exist_ok=True)
        handler = logging.FileHandler(args.log_file, encoding="utf-8")
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        handler.setLevel(logging.INFO)
        root.addHandler(handler)
        root.setLevel(min(root.level, logging.INFO))
    if root.level > logging.DEBUG:
        # pygls logs every message at INFO: only useful when debugging the protocol (-vv).
        logging.getLogger("pygls").setLevel(logging.WARNING)
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
        rpc_in, rpc_out = private_stdio()
        server.start_io(rpc_in, rpc_out)
    return 0


def private_stdio() -> tuple[BinaryIO, BinaryIO]:
    """JSON-RPC on private duplicates of fds 0 and 1; fd 1 then points at stderr, fd 0 at /dev/null.

    llama-cpp-python silences model loading by pointing fd 1 at /dev/null for a moment: a response
    written meanwhile would vanish and the client would wait forever. Native libraries that print,
    and child processes (test runs of code actions) that inherit fd 0 or read it, would likewise
    corrupt or steal the protocol stream.
    """
    sys.stdout.flush()
    rpc_in = os.fdopen(os.dup(0), "rb")
    rpc_out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    sys.stdout = sys.stderr
    return rpc_in, rpc_out
