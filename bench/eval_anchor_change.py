"""The wrapped-header anchor (a485d2d and after), paired on the cases it changes: exact match with
the anchor of two commits (by default this one and the one before a485d2d), the same cases, the
same model, one process.

Cases are the evaluation's own (`infiller eval`'s sampling, rest-of-line and statement levels) in
the given packages; only those whose prompt anchor differs between the two versions are run
(elsewhere the prompts are identical, and so are the answers). Each case is run with both
anchors, the model's cache reset per case, as the evaluation does.

    python -m bench.eval_anchor_change httpx==0.27.2 werkzeug==3.0.4 jinja2==3.1.4 --per-package 15
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from types import ModuleType

from context.masking import sample_masks
from server import completion
from server.eval.configs import standard_configs
from server.eval.metrics import exact_match
from server.eval.repo import Workspace, resolve_repo
from server.eval.runner import _run_case, default_loader

REPO = Path(__file__).resolve().parent.parent
CACHE = Path.home() / ".cache" / "infiller" / "eval"
# Cases drawn per package before filtering: about one in eight lands in a wrapped-header body.
DRAWN = 600
SEED = 2026


def _anchor_module(commit: str) -> ModuleType:
    source = subprocess.run(
        ["git", "show", f"{commit}:context/anchor.py"], cwd=REPO, check=True, capture_output=True, text=True
    ).stdout
    path = Path(tempfile.mkdtemp()) / f"anchor_{commit.replace('~', '_')}.py"
    path.write_text(source, encoding="utf-8")
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("packages", nargs="+", help="name==version sdists")
    parser.add_argument("--per-package", type=int, default=15)
    parser.add_argument("--new", default="HEAD")
    parser.add_argument("--old", default="a485d2d~1")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "eval_anchor_change.jsonl")
    args = parser.parse_args()
    new = _anchor_module(args.new)
    old = _anchor_module(args.old)
    configs = standard_configs()
    runtime = default_loader("qwen2.5-coder-1.5b", args.threads)
    rows = []
    try:
        for package in args.packages:
            source = resolve_repo(package, CACHE / "src")
            with tempfile.TemporaryDirectory() as scratch:
                workspace = Workspace(source, Path(scratch) / "scratch", Path(scratch) / "index.sqlite")
                try:
                    masks = sample_masks(
                        workspace.files(), workspace.read, ["line", "statement"], DRAWN, seed=SEED, per_file=8
                    )
                    changed = []
                    for mask in masks:
                        prefix = (workspace.read(mask.path) or "")[: mask.start]
                        if old.middle_start(prefix) != new.middle_start(prefix):
                            changed.append(mask)
                    print(
                        f"{package}: {len(changed)} of {len(masks)} cases anchored differently",
                        file=sys.stderr,
                    )
                    for mask in changed[: args.per_package]:
                        row = {"package": package, "key": mask.key, "target": mask.target}
                        for label, module in (("new", new), ("old", old)):
                            completion.middle_start = module.middle_start
                            completers = {
                                "default": completion.Completer(
                                    runtime,
                                    root=workspace.root,
                                    index=workspace.index,
                                    settings=configs["default"].completion_settings(),
                                    sources=configs["default"].sources or None,
                                )
                            }
                            record = _run_case(
                                workspace,
                                mask,
                                "qwen2.5-coder-1.5b",
                                completers,
                                configs,
                                ["default"],
                                None,
                                0,
                            )[0]
                            row[label] = record.prediction
                            row[f"{label}_exact"] = exact_match(record.prediction, mask.target)
                            row[f"{label}_prompt_tokens"] = record.prompt_tokens
                        rows.append(row)
                        print(json.dumps(row), file=sys.stderr)
                finally:
                    workspace.close()
    finally:
        close = getattr(runtime, "close", None)
        if close is not None:
            close()
    args.out.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    new_only = sum(r["new_exact"] and not r["old_exact"] for r in rows)
    old_only = sum(r["old_exact"] and not r["new_exact"] for r in rows)
    print(
        f"{len(rows)} cases: exact {sum(r['new_exact'] for r in rows)} with the new anchor, "
        f"{sum(r['old_exact'] for r in rows)} with the old; only new {new_only}, only old {old_only}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
