"""`infiller context FILE:LINE:COL`: which cross-file chunks a completion there would see, and why.

Prints each chosen chunk with its source, score and token count, the retrieval time, and the
final prompt, so a user can see why a completion knew (or did not know) something. The workspace's
`.infiller.toml` (what `infiller eval --tune` writes) applies as it does to completions there;
`--budget` and `--sources` override it.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

from server.cli.common import fail, non_negative_int, parse_location
from server.workspace import find_root

# Without the model, tokens are approximated as this many characters each (Qwen averages ~3.5 on code).
CHARS_PER_TOKEN_ESTIMATE = 3.5


def register(sub: argparse._SubParsersAction) -> None:
    from context.retrieve import SOURCES

    p = sub.add_parser("context", help="show the cross-file context retrieved for FILE:LINE:COL (1-based)")
    p.add_argument("location", type=parse_location, metavar="FILE:LINE:COL")
    p.add_argument("--root", help="workspace root (default: nearest project marker)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument(
        "--budget", type=non_negative_int, help="context budget in tokens (default: the completion setting)"
    )
    p.add_argument("--model", help="registry model whose tokenizer and prompt format to use")
    p.add_argument(
        "--sources",
        help=f"comma-separated retrieval sources out of {','.join(SOURCES)} (default: the tuned default)",
    )
    p.add_argument(
        "--no-model", action="store_true", help="do not load the model: estimated tokens, no final prompt"
    )
    p.set_defaults(func=cmd_context)


def cmd_context(args: argparse.Namespace) -> int:
    from context.retrieve import DEFAULT_SOURCES, SOURCES, RetrievalResult, Retriever
    from server.completion import CompletionSettings
    from server.settings_file import FILE_NAME, context_over, describe, load_workspace_settings
    from server.workspace import open_index

    loc = args.location
    if not loc.path.is_file():
        return fail(f"no such file: {loc.path}")
    text = loc.path.read_text(encoding="utf-8", errors="replace")
    lines = text.split("\n")
    if loc.line >= len(lines) or loc.column > len(lines[loc.line]):
        return fail(f"{loc.path}:{loc.line + 1}:{loc.column + 1} is past the end of the file")
    chosen = tuple(s.strip() for s in args.sources.split(",")) if args.sources else None
    unknown = set(chosen or ()) - set(SOURCES)
    if unknown:
        return fail(f"unknown sources {sorted(unknown)}; choose from {','.join(SOURCES)}")
    if args.budget == 0:
        # With or without the model: a zero budget turns retrieval off, so there is nothing to show.
        return fail("retrieval is disabled (context budget 0)")
    root = Path(args.root).resolve() if args.root else find_root(loc.path)
    # What a completion here sees: the workspace file's budgets and sources, then the options.
    workspace = load_workspace_settings(root)
    settings = context_over(CompletionSettings(), workspace)
    if args.budget is not None:
        settings = dataclasses.replace(settings, context_tokens=args.budget)
    if chosen is not None:
        settings = dataclasses.replace(settings, sources=chosen)
    if settings.context_tokens <= 0:
        return fail(
            f"retrieval is disabled here: {root / FILE_NAME} sets budgetTokens = 0"
            " (pass --budget N to see what it would retrieve)"
        )
    sources = settings.sources or DEFAULT_SOURCES
    in_force = describe(workspace)
    index = open_index(root)
    path = loc.path.resolve()
    prompt_text: str | None = None
    prompt_tokens: int | None = None
    try:
        if args.no_model:
            retriever = Retriever(index, sources)
            result: RetrievalResult = retriever.retrieve(
                path, text, loc.line, loc.column, settings.context_tokens, _estimate_tokens
            )
        else:
            from server.completion import Completer
            from server.model.registry import ModelError
            from server.request import CompletionContext

            try:
                completer = Completer.load(
                    args.model, root=root, settings=settings, index=index, sources=sources
                )
            except ModelError as exc:
                return fail(f"{exc} (or use --no-model)")
            prompt = completer.build_prompt(CompletionContext.at(path, text, loc.line, loc.column))
            if prompt.retrieval is None:
                return fail("retrieval is disabled (context budget 0)")
            result = prompt.retrieval
            prompt_text, prompt_tokens = prompt.text, len(prompt.tokens)
    finally:
        index.close()
    if args.json:
        payload: dict[str, Any] = {
            "root": str(root),
            "sources": list(sources),
            "workspace_settings": in_force or None,
            **result.as_json(),
        }
        payload["prompt"] = prompt_text
        payload["prompt_tokens"] = prompt_tokens
        print(json.dumps(payload, indent=2))
        return 0
    if in_force:
        print(f"workspace settings in force: {in_force}")
    _print_human(result, prompt_text, prompt_tokens)
    return 0


def _estimate_tokens(text: str) -> int:
    return int(len(text) / CHARS_PER_TOKEN_ESTIMATE) + 1


def _print_human(result: Any, prompt_text: str | None, prompt_tokens: int | None) -> None:
    out = sys.stdout
    reused = " (unchanged: previous result reused)" if result.reused else ""
    print(
        f"retrieval {result.elapsed_ms:.1f} ms, {result.candidates} candidates, "
        f"{len(result.chunks)} chosen, {result.used_tokens}/{result.budget} tokens{reused}",
        file=out,
    )
    if result.source_ms:
        print("  per source: " + ", ".join(f"{k} {v:.1f} ms" for k, v in result.source_ms.items()), file=out)
    if result.names:
        print("  names near the cursor: " + ", ".join(result.names[:12]), file=out)
    print(file=out)
    print(f"{'#':>2}  {'source':<11} {'score':>7} {'tokens':>6}  location", file=out)
    for number, chunk in enumerate(result.chunks, 1):
        print(
            f"{number:>2}  {chunk.source:<11} {chunk.score:>7.4f} {chunk.tokens:>6}  {_where(chunk)}",
            file=out,
        )
    if result.dropped:
        print(f"\n{len(result.dropped)} candidates did not fit the budget:", file=out)
        for item in result.dropped[:10]:
            print(f"    {item['source']:<11} {item['path']}:{item['lines'][0]}-{item['lines'][1]}", file=out)
    if prompt_text is not None:
        print(f"\n----- prompt ({prompt_tokens} tokens) -----", file=out)
        print(prompt_text, file=out)
    else:
        print("\n----- chunks -----", file=out)
        for chunk in result.chunks:
            print(f"# {_where(chunk)} [{chunk.source}]", file=out)
            print(chunk.text, end="", file=out)


def _where(chunk: Any) -> str:
    """path:first-last, or `path (outline)` for one-line signature lists that have no single span."""
    if chunk.start_line < 0:
        return f"{chunk.path} (outline)"
    return f"{chunk.path}:{chunk.start_line + 1}-{chunk.end_line + 1}"
