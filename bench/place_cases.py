"""What the benchmarks that ask the model at sampled places of the development packages share
(bench.header_end, bench.next_line): their command line, and the model and completer they ask."""

from __future__ import annotations

import argparse
from pathlib import Path

from server.completion import Completer, CompletionSettings
from server.model.loader import load_runtime
from server.model.runtime import Backend

REPO = Path(__file__).resolve().parent.parent
CACHE = Path.home() / ".cache" / "infiller" / "eval"
PACKAGES = ("httpx==0.27.2", "werkzeug==3.0.4", "jinja2==3.1.4")


def parse_args(doc: str, per_package: int, out: str) -> argparse.Namespace:
    """The packages (sdists), cases per package, model, threads and the JSONL file to write."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    parser.add_argument("packages", nargs="*", default=list(PACKAGES), help="name==version sdists")
    parser.add_argument("--per-package", type=int, default=per_package)
    parser.add_argument("--model", default="qwen2.5-coder-1.5b")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / out)
    return parser.parse_args()


def model_completer(args: argparse.Namespace) -> tuple[Backend, Completer]:
    """The model in this process and a completer with the default settings (no retrieval)."""
    runtime = load_runtime(args.model, n_threads=args.threads, in_process=True)
    return runtime, Completer(runtime, settings=CompletionSettings())
