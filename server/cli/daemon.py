"""`infiller daemon`: serve completions over HTTP to llama.vim, llama.vscode, Continue, OpenAI clients."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from pathlib import Path

from server.cli.common import fail, non_negative_int, port_number, positive_int

DEFAULT_HOST = "127.0.0.1"
# llama.vim's and llama.vscode's default endpoint port: they work against the daemon unconfigured.
DEFAULT_PORT = 8012


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("daemon", help="serve completions over HTTP (llama.cpp /infill, OpenAI, Continue)")
    p.add_argument(
        "--host", default=DEFAULT_HOST, help=f"address to bind (default {DEFAULT_HOST}: this machine only)"
    )
    p.add_argument(
        "--port",
        type=port_number,
        default=DEFAULT_PORT,
        help=f"port (default {DEFAULT_PORT}; 0: any free one)",
    )
    p.add_argument(
        "--root",
        action="append",
        default=[],
        help="workspace to index (repeatable; default: the current directory's project, if it is one)",
    )
    p.add_argument("--model", help="registry model name (default: the registry default)")
    p.add_argument(
        "--threads", type=non_negative_int, default=0, help="model threads (default: the self-test's choice)"
    )
    p.add_argument(
        "--backend", help='run the model on a server instead: "http://host:port" or "openai+http://…/v1"'
    )
    p.add_argument("--backend-api-key-env", help="environment variable holding the backend's API key")
    p.add_argument(
        "--token-env",
        help="environment variable holding the token clients must send (default INFILLER_DAEMON_TOKEN; "
        "required to bind a non-loopback address)",
    )
    p.add_argument(
        "--max-queue",
        type=non_negative_int,
        help="requests that may wait for the model before 503s (default 8)",
    )
    p.add_argument(
        "--max-body-bytes", type=positive_int, help="largest request body accepted (default 2 MiB)"
    )
    p.add_argument(
        "--max-prompt-chars", type=positive_int, help="largest prompt accepted, in characters (default 1 Mi)"
    )
    p.set_defaults(func=cmd_daemon)


def default_roots(cwd: Path | None = None) -> list[Path]:
    """The current directory's project root, when it has a project marker (never a bare home folder)."""
    from server.workspace import ROOT_MARKERS, find_root

    root = find_root(cwd or Path.cwd())
    return [root] if any((root / marker).exists() for marker in ROOT_MARKERS) else []


def cmd_daemon(args: argparse.Namespace) -> int:
    from server.daemon.app import DEFAULT_MAX_BODY_BYTES, DEFAULT_MAX_PROMPT_CHARS, serve
    from server.daemon.core import DEFAULT_MAX_QUEUE, Core, DaemonConfig
    from server.daemon.metrics import Metrics
    from server.daemon.security import ConfigError, resolve_token

    try:
        token = resolve_token(args.host, args.token_env)
    except ConfigError as exc:
        return fail(str(exc))
    roots = [Path(r).resolve() for r in args.root] or default_roots()
    for root in roots:
        if not root.is_dir():
            return fail(f"--root {root}: not a directory")
    config = DaemonConfig(
        model=args.model,
        threads=args.threads,
        backend=args.backend,
        api_key_env=args.backend_api_key_env,
        roots=tuple(roots),
        max_queue=args.max_queue if args.max_queue is not None else DEFAULT_MAX_QUEUE,
    )
    holder: list[Core] = []
    metrics = Metrics(restarts=lambda: holder[0].restarts if holder else 0)
    core = Core(config, metrics)
    holder.append(core)

    def ready(url: str) -> None:
        where = ", ".join(str(r) for r in roots) or "no workspace (pass --root)"
        print(f"infiller daemon listening on {url} (indexing {where})", file=sys.stderr, flush=True)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await serve(
            core,
            metrics,
            host=args.host,
            port=args.port,
            token=token,
            max_body_bytes=args.max_body_bytes or DEFAULT_MAX_BODY_BYTES,
            max_prompt_chars=args.max_prompt_chars or DEFAULT_MAX_PROMPT_CHARS,
            ready=ready,
            stop=stop,
        )

    try:
        asyncio.run(main())
    except OSError as exc:
        return fail(f"cannot listen on {args.host}:{args.port}: {exc}")
    return 0
