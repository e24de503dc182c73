"""`infiller models list|pull|verify|path|rm`."""

from __future__ import annotations

import argparse
import json
from typing import Any

from server.cli.common import PhaseBar, fail
from server.model import registry
from server.model.registry import ModelError


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("models", help="list, pull and verify models")
    msub = parser.add_subparsers(dest="models_command", metavar="ACTION", required=True)
    p = msub.add_parser("list", help="registry entries and whether each is pulled")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_list)
    for name, func, text in (
        ("pull", cmd_pull, "fetch, assemble and verify a model (idempotent)"),
        ("verify", cmd_verify, "check size and sha256 of a pulled model"),
        ("path", cmd_path, "print the path of a pulled model"),
        ("rm", cmd_rm, "delete a pulled model from the cache"),
    ):
        p = msub.add_parser(name, help=text)
        p.add_argument("name", nargs="?", help="model name (default: the registry default)")
        if name == "pull":
            p.add_argument("--force", action="store_true", help="fetch again even if verified")
            p.add_argument("--quiet", action="store_true", help="no progress bar")
        p.set_defaults(func=func)


def cmd_list(args: argparse.Namespace) -> int:
    try:
        reg = registry.load_registry()
    except ModelError as exc:
        return fail(str(exc))
    rows: list[dict[str, Any]] = []
    for spec in reg.models.values():
        path = registry.cached_path(spec)
        rows.append(
            {
                "name": spec.name,
                "default": spec.name == reg.default,
                "family": spec.family,
                "size": spec.size,
                "pulled": path.is_file(),
                "verified": registry.is_verified(spec),
                "path": str(path),
                "description": spec.description,
            }
        )
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    for row in rows:
        mark = "*" if row["default"] else " "
        state = "verified" if row["verified"] else ("pulled" if row["pulled"] else "not pulled")
        print(f"{mark} {row['name']:<22} {row['size'] / 1e6:>8.1f} MB  {state:<10}  {row['description']}")
    return 0


def cmd_pull(args: argparse.Namespace) -> int:
    try:
        spec = registry.load_registry().get(args.name)
        if not args.force and registry.is_verified(spec):
            print(f"{spec.name}: already pulled and verified: {registry.cached_path(spec)}")
            return 0
        bar = PhaseBar(enabled=not args.quiet)
        try:
            path = registry.pull(spec, bar, force=args.force)
        finally:
            bar.close()
    except ModelError as exc:
        return fail(str(exc))
    print(f"{spec.name}: {path}")
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    try:
        spec = registry.load_registry().get(args.name)
        bar = PhaseBar()
        try:
            path = registry.verify(spec, progress=bar)
        finally:
            bar.close()
    except ModelError as exc:
        return fail(str(exc))
    print(f"{spec.name}: OK ({spec.size:,} bytes, sha256 {spec.sha256[:16]}…) {path}")
    return 0


def cmd_path(args: argparse.Namespace) -> int:
    try:
        spec = registry.load_registry().get(args.name)
        print(registry.resolve(spec))
    except ModelError as exc:
        return fail(str(exc))
    return 0


def cmd_rm(args: argparse.Namespace) -> int:
    try:
        spec = registry.load_registry().get(args.name)
    except ModelError as exc:
        return fail(str(exc))
    removed = registry.remove(spec)
    print(f"{spec.name}: {'removed' if removed else 'was not pulled'}")
    return 0
