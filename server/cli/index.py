"""`infiller index [DIR]`: build or refresh the workspace index and report its size and speed."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tqdm import tqdm

from server.cli.common import fail


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("index", help="build or refresh the tree-sitter index of a workspace")
    p.add_argument("directory", nargs="?", default=".", help="workspace root (default: current directory)")
    p.add_argument("--db", help="database path (default: the user cache dir)")
    p.add_argument("--rebuild", action="store_true", help="delete the database first (cold build)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_index)


def cmd_index(args: argparse.Namespace) -> int:
    from context.index import Index, default_db_path

    root = Path(args.directory).resolve()
    if not root.is_dir():
        return fail(f"not a directory: {root}")
    db_path = Path(args.db) if args.db else default_db_path(root)
    if args.rebuild:
        for suffix in ("", "-wal", "-shm"):
            Path(f"{db_path}{suffix}").unlink(missing_ok=True)
    bar = tqdm(total=0, unit="file", desc="index", file=sys.stderr, disable=args.quiet, leave=False)

    def progress(done: int, total: int) -> None:
        bar.total = total
        bar.update(done - bar.n)

    with Index.open(root, db_path) as index:
        stats = index.refresh(progress)
    bar.close()
    rate = stats.parsed / stats.elapsed_s if stats.elapsed_s > 0 else 0.0
    print(f"root      {root}")
    print(f"database  {db_path} ({stats.db_bytes / 1e6:.1f} MB)")
    print(f"files     {stats.files} ({stats.parsed} parsed, {stats.removed} removed)")
    print(f"symbols   {stats.symbols}")
    print(f"time      {stats.elapsed_s:.2f} s" + (f" ({rate:.0f} files/s)" if stats.parsed else ""))
    return 0
