"""Cross-file completion evaluation: does retrieved context make the model use the right names?

Cases come from pinned pure-Python sdists fetched from the package index at run time (into
bench/work/eval/, never committed): the cursor sits before a use of a name that the file imports
from another module of the same package; the target is the rest of that line. Every
configuration runs the same cases with the same model in one process, the KV cache reset per case.

    .venv/bin/python -m bench.eval_crossfile                 # default: 48 cases, all configurations
    .venv/bin/python -m bench.eval_crossfile --cases 200 --model qwen2.5-coder-1.5b

Writes bench/results/eval_crossfile.json and .md. The product's harness is `infiller eval`
(server/eval/, docs/eval.md: any repository, six masking levels, executable correctness, --tune);
this script keeps the fixed development and report package sets and shares its metrics.
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import re
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench.sdist import fetch_sdist

REPO = Path(__file__).resolve().parent.parent
WORK = REPO / "bench" / "work" / "eval"
RESULTS = REPO / "bench" / "results"

# Pinned: the cases must not move under us between runs. Chosen for dense intra-package imports.
PACKAGES: tuple[str, ...] = ("attrs==24.2.0", "click==8.1.7", "requests==2.32.3", "rich==13.9.4")


@dataclass(frozen=True)
class Config:
    """Retrieval sources (None = current file only, no index) and, where set, the in-file window."""

    sources: tuple[str, ...] | None
    prefix_tokens: int | None = None  # None: --prefix-tokens
    suffix_tokens: int | None = None  # None: --suffix-tokens
    cursor_line_in_middle: bool = True
    function_body_in_middle: bool = True


# The editor's in-file window since the typing-loop work (CompletionSettings' defaults).
LONG_PREFIX, LONG_SUFFIX = 1536, 256

CONFIGS: dict[str, Config] = {
    "file-only": Config(None),
    "jaccard-windows": Config(("similar",)),
    "full (default)": Config(("definitions", "recent")),
    "definitions": Config(("definitions",)),
    "repomap": Config(("repomap",)),
    "all sources": Config(("definitions", "similar", "recent", "repomap")),
    "all - similar": Config(("definitions", "recent", "repomap")),
    "all - repomap": Config(("definitions", "similar", "recent")),
    # The baseline to beat: a plain FIM prompt with a long in-file window and no retrieval.
    "plain long FIM": Config(None, LONG_PREFIX, LONG_SUFFIX, cursor_line_in_middle=False),
    # The editor's default prompt: the long window plus retrieved definitions.
    "long + context": Config(("definitions", "recent"), LONG_PREFIX, LONG_SUFFIX),
    # The default before the function body went after the middle marker: the cursor line only.
    "long + context (cursor-line middle)": Config(
        ("definitions", "recent"), LONG_PREFIX, LONG_SUFFIX, function_body_in_middle=False
    ),
    "long + context (classic layout)": Config(
        ("definitions", "recent"), LONG_PREFIX, LONG_SUFFIX, cursor_line_in_middle=False
    ),
    # The editor's default before the typing-loop work: 768 prefix + 48 suffix tokens.
    "short + context (old default)": Config(("definitions", "recent"), 768, 48, cursor_line_in_middle=False),
}
# The retriever's default configuration: the one the others are paired with in the report.
DEFAULT_CONFIG = "full (default)"
# Targets shorter than this are trivially guessable (`)`), longer ones are mostly unguessable.
MIN_TARGET_CHARS = 4
MAX_TARGET_CHARS = 100
# At most this many cases per file: keeps the set spread over many modules.
MAX_CASES_PER_FILE = 2
SEED = 20241121

IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

log = logging.getLogger("eval_crossfile")


@dataclass(frozen=True)
class Case:
    package: str
    root: str  # absolute path of the unpacked package source root
    path: str  # relative to root
    line: int  # 0-based
    column: int
    name: str  # the imported name used at the cursor
    target: str  # the rest of the line
    text: str  # the buffer: the file with the target removed


@dataclass
class Outcome:
    config: str
    case: int
    prediction: str
    exact: bool
    edit_similarity: float
    context_tokens: int
    chunks: int
    retrieval_ms: float
    total_ms: float
    definition_shown: bool = False  # the context holds the definition of the name at the cursor
    confidence: float = 1.0  # the model's geometric-mean token probability (for tuning a gate)
    prompt_tokens: int = 0


@dataclass
class Summary:
    config: str
    cases: int
    exact_match: float
    edit_similarity: float
    definition_shown: float
    mean_context_tokens: float
    retrieval_ms_p50: float
    retrieval_ms_p95: float
    total_ms_mean: float
    per_package: dict[str, float] = field(default_factory=dict)
    package_cases: dict[str, int] = field(default_factory=dict)


# ---------------------------------------------------------------------------------------------
# Data


def fetch(spec: str) -> Path:
    """Download and unpack one pinned sdist; returns the unpacked directory."""
    return fetch_sdist(spec, WORK / "src")


def package_root(unpacked: Path) -> Path:
    """The directory holding the importable package (src/ layout or flat)."""
    return unpacked / "src" if (unpacked / "src").is_dir() else unpacked


def build_cases(packages: Sequence[str], count: int, seed: int = SEED) -> list[Case]:
    """Cursor-before-imported-name cases, spread evenly over packages, deterministic for a seed."""
    from context.imports import find_symbol
    from context.index import Index

    per_package: list[list[Case]] = []
    for spec in packages:
        root = package_root(fetch(spec)).resolve()
        with Index.open(root, WORK / "db" / f"{spec.replace('==', '-')}.sqlite") as index:
            index.refresh()
            cases: list[Case] = []
            for rel in index.files():
                if not rel.endswith(".py") or "test" in rel.split("/")[0] or "/tests/" in rel:
                    continue
                cases.extend(_file_cases(index, spec, root, rel, find_symbol))
        random.Random(seed).shuffle(cases)
        per_package.append(cases)
    out: list[Case] = []
    while len(out) < count and any(per_package):
        for cases in per_package:
            if cases and len(out) < count:
                out.append(cases.pop())
    return out


def _file_cases(index: Any, spec: str, root: Path, rel: str, find_symbol: Any) -> list[Case]:
    from context.imports import resolve_binding
    from context.syntax import parse

    text = (root / rel).read_text("utf-8")
    tree = parse("python", text.encode("utf-8"))
    lines = text.split("\n")
    names: dict[str, str] = {}
    import_lines: set[int] = set()
    for binding in index.bindings(rel):
        import_lines.add(binding.line)
        if not binding.local or binding.local == "*":
            continue
        target = resolve_binding(index, rel, binding)
        if target is not None and target.path != rel:
            names[binding.local] = target.path
    if not names:
        return []
    found: list[Case] = []
    first_code = max(import_lines, default=0) + 1
    for number in range(first_code, len(lines)):
        line = lines[number]
        stripped = line.strip()
        if not stripped or stripped.startswith(("#", "import ", "from ", "def ", "class ", "@")):
            continue
        if '"""' in line or "'''" in line:
            continue
        for match in IDENT.finditer(line):
            name = match.group(0)
            if name not in names or (match.start() > 0 and line[match.start() - 1] == "."):
                continue
            if not _is_code_identifier(tree, number, line, match.start(), match.end()):
                continue  # inside a string, comment or docstring: not a use of the import
            target = line[match.start() :].rstrip()
            if not (MIN_TARGET_CHARS <= len(target) <= MAX_TARGET_CHARS) or len(target) <= len(name) + 1:
                continue
            buffer = "\n".join([*lines[:number], line[: match.start()], *lines[number + 1 :]])
            found.append(Case(spec, str(root), rel, number, match.start(), name, target, buffer))
            break
    random.Random(f"{SEED}{rel}").shuffle(found)
    return found[:MAX_CASES_PER_FILE]


def _is_code_identifier(tree: Any, row: int, line: str, start: int, end: int) -> bool:
    # tree-sitter points are in bytes; the regex matched code points.
    start_b = len(line[:start].encode("utf-8"))
    end_b = len(line[:end].encode("utf-8"))
    node = tree.root_node.descendant_for_point_range((row, start_b), (row, end_b))
    if node is None or node.type != "identifier":
        return False
    parent = node.parent
    while parent is not None:
        if parent.type in ("string", "comment"):
            return False
        parent = parent.parent
    return True


# ---------------------------------------------------------------------------------------------
# Scoring


def edit_similarity(a: str, b: str) -> float:
    """1 - Levenshtein(a, b) / max(len): 1.0 is identical (the product's metric: server/eval/metrics.py)."""
    from server.eval.metrics import edit_similarity as product_edit_similarity

    return product_edit_similarity(a, b)


def shows_definition(name: str, texts: Sequence[str]) -> bool:
    """Whether retrieved text defines `name` (def/class line or a module-level assignment)."""
    pattern = re.compile(rf"(?:^|\s)(?:def|class)\s+{re.escape(name)}\b|^{re.escape(name)}\s*[:=]", re.M)
    return any(pattern.search(text) for text in texts)


def first_line(text: str | None) -> str:
    return (text or "").split("\n")[0].rstrip()


# ---------------------------------------------------------------------------------------------
# Running


def run_config(
    name: str,
    config: Config,
    cases: Sequence[Case],
    runtime: Any,
    budget: int,
    indexes: dict[str, Any],
    prefix_tokens: int = 384,
    suffix_tokens: int = 64,
) -> list[Outcome]:
    from server.completion import Completer, CompletionSettings
    from server.request import CompletionContext

    outcomes = []
    completers: dict[str, Any] = {}
    for number, case in enumerate(cases):
        completer = completers.get(case.package)
        if completer is None:
            settings = CompletionSettings(
                context_tokens=budget if config.sources else 0,
                prefix_tokens=config.prefix_tokens or prefix_tokens,
                suffix_tokens=config.suffix_tokens or suffix_tokens,
                cursor_line_in_middle=config.cursor_line_in_middle,
                function_body_in_middle=config.function_body_in_middle,
            )
            index = indexes[case.package] if config.sources else None
            completer = completers[case.package] = Completer(
                runtime, root=Path(case.root), index=index, settings=settings, sources=config.sources
            )
        # Each case starts from a fresh retrieval history and KV cache: results do not depend on order.
        retriever = getattr(completer, "_retriever", None)
        if retriever is not None:
            retriever.reset()
        request = CompletionContext.at(Path(case.root) / case.path, case.text, case.line, case.column)
        result = completer.complete(request, reset_cache=True)
        prediction = first_line(result.text)
        outcomes.append(
            Outcome(
                config=name,
                case=number,
                prediction=prediction,
                exact=prediction.strip() == case.target.strip(),
                edit_similarity=edit_similarity(prediction.strip(), case.target.strip()),
                context_tokens=int(result.tokens.get("context", 0)),
                chunks=len(result.chunks),
                retrieval_ms=float(result.timings.get("retrieval_ms", 0.0)),
                total_ms=float(result.timings.get("total_ms", 0.0)),
                definition_shown=shows_definition(case.name, [c.text for c in result.chunks]),
                confidence=result.confidence,
                prompt_tokens=int(result.tokens.get("prompt", 0)),
            )
        )
    return outcomes


def summarize(name: str, outcomes: Sequence[Outcome], cases: Sequence[Case]) -> Summary:
    n = len(outcomes) or 1
    retrieval = sorted(o.retrieval_ms for o in outcomes) or [0.0]
    per_package: dict[str, list[bool]] = {}
    for o in outcomes:
        per_package.setdefault(cases[o.case].package, []).append(o.exact)
    return Summary(
        config=name,
        cases=len(outcomes),
        exact_match=sum(o.exact for o in outcomes) / n,
        edit_similarity=sum(o.edit_similarity for o in outcomes) / n,
        definition_shown=sum(o.definition_shown for o in outcomes) / n,
        mean_context_tokens=sum(o.context_tokens for o in outcomes) / n,
        retrieval_ms_p50=retrieval[len(retrieval) // 2],
        retrieval_ms_p95=retrieval[min(len(retrieval) - 1, int(len(retrieval) * 0.95))],
        total_ms_mean=sum(o.total_ms for o in outcomes) / n,
        per_package={k: sum(v) / len(v) for k, v in sorted(per_package.items())},
        package_cases={k: len(v) for k, v in sorted(per_package.items())},
    )


def paired(outcomes: Sequence[Outcome], a: str, b: str) -> tuple[int, int, float]:
    """Cases only `a` gets exactly right, cases only `b` does, and the two-sided sign-test p-value.

    Both configurations see the same cases, so the cases where they differ are what separates
    them; with few such cases a difference in the percentages is not evidence of anything.
    """
    hits: dict[str, dict[int, bool]] = {a: {}, b: {}}
    for o in outcomes:
        if o.config in hits:
            hits[o.config][o.case] = o.exact
    shared = hits[a].keys() & hits[b].keys()
    only_a = sum(hits[a][c] and not hits[b][c] for c in shared)
    only_b = sum(hits[b][c] and not hits[a][c] for c in shared)
    from server.eval.metrics import sign_test

    return only_a, only_b, sign_test(only_a, only_b)


def markdown(summaries: Sequence[Summary], meta: dict[str, Any], outcomes: Sequence[Outcome] = ()) -> str:
    lines = [
        "# Cross-file completion evaluation",
        "",
        f"Model `{meta['model']}`, {meta['cases']} cases{_part(meta)} from {', '.join(meta['packages'])}; "
        f"context budget {meta['budget']} tokens, current-file window {meta['prefix_tokens']} prefix + "
        f"{meta['suffix_tokens']} suffix tokens where a configuration sets none (long: {LONG_PREFIX} + "
        f"{LONG_SUFFIX}, old default: 768 + 48; suffixes at most 12 lines); KV cache reset per case; "
        f"{meta['elapsed_s']:.0f} s total.",
        "",
        f"Command: `{meta['command']}`",
        "",
        "| configuration | exact match | edit similarity | definition in context | context tokens "
        "| retrieval p50 / p95 ms | mean total ms |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for s in summaries:
        lines.append(
            f"| {s.config} | {s.exact_match:.1%} | {s.edit_similarity:.3f} | {s.definition_shown:.0%} | "
            f"{s.mean_context_tokens:.0f} | "
            f"{s.retrieval_ms_p50:.1f} / {s.retrieval_ms_p95:.1f} | {s.total_ms_mean:.0f} |"
        )
    lines += [
        "",
        "Exact match per package (cases):",
        "",
        "| configuration | "
        + " | ".join(f"{p} ({summaries[0].package_cases.get(p, 0)})" for p in meta["packages"])
        + " |",
        "|---|" + "---:|" * len(meta["packages"]),
    ]
    for s in summaries:
        cells = [f"{s.per_package.get(p, 0.0):.0%}" for p in meta["packages"]]
        lines.append(f"| {s.config} | " + " | ".join(cells) + " |")
    names = [s.config for s in summaries]
    if outcomes and DEFAULT_CONFIG in names and len(names) > 1:
        lines += [
            "",
            f"Paired with `{DEFAULT_CONFIG}` (cases only one of the two gets exactly right; sign test):",
            "",
            f"| configuration | only {DEFAULT_CONFIG} | only this one | p |",
            "|---|---:|---:|---:|",
        ]
        for name in names:
            if name != DEFAULT_CONFIG:
                only_default, only_other, p = paired(outcomes, DEFAULT_CONFIG, name)
                lines.append(f"| {name} | {only_default} | {only_other} | {p:.2f} |")
    return "\n".join(lines) + "\n"


def _part(meta: dict[str, Any]) -> str:
    skipped = int(meta.get("skipped", 0))
    return f" (numbers {skipped + 1}-{skipped + meta['cases']} of the case list)" if skipped else ""


def results_meta(
    args: argparse.Namespace,
    argv: Sequence[str] | None,
    packages: Sequence[str],
    cases: Sequence[Case],
    start: float,
) -> dict[str, Any]:
    return {
        "model": args.model,
        "cases": len(cases),
        "skipped": args.skip,
        "packages": list(packages),
        "budget": args.budget,
        "prefix_tokens": args.prefix_tokens,
        "suffix_tokens": args.suffix_tokens,
        "elapsed_s": time.perf_counter() - start,
        "command": "python -m bench.eval_crossfile " + " ".join(argv if argv is not None else sys.argv[1:]),
    }


def save(
    out: Path,
    meta: dict[str, Any],
    summaries: Sequence[Summary],
    cases: Sequence[Case],
    outcomes: Sequence[Outcome],
) -> None:
    """`out`.json (everything but the case buffers) and `out`.md (the report)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.parent.joinpath(out.name + ".json").write_text(
        json.dumps(
            {
                "meta": meta,
                "summaries": [asdict(s) for s in summaries],
                "cases": [{k: v for k, v in asdict(c).items() if k != "text"} for c in cases],
                "outcomes": [asdict(o) for o in outcomes],
            },
            indent=1,
        )
    )
    out.parent.joinpath(out.name + ".md").write_text(markdown(summaries, meta, outcomes))


def combine(parts: Sequence[Path], out: Path) -> list[Summary]:
    """One result from runs over consecutive parts of the case list (`--skip`), same configurations.

    Cases are deterministic and every case starts from a reset KV cache, so a sample run in parts
    scores exactly as one run would; the parts must come from the same commit and settings.
    """
    metas, cases, outcomes = [], [], []
    for path in parts:
        data = json.loads(path.with_name(path.name + ".json").read_text())
        offset = len(cases)
        skipped = int(data["meta"].get("skipped", 0))
        if skipped != offset:
            raise SystemExit(f"{path}: starts at case {skipped + 1}, expected {offset + 1}")
        metas.append(data["meta"])
        cases.extend(Case(text="", **c) for c in data["cases"])
        outcomes.extend(Outcome(**{**o, "case": o["case"] + offset}) for o in data["outcomes"])
    settings = {k: {m[k] for m in metas} for k in ("model", "budget", "prefix_tokens", "suffix_tokens")}
    if any(len(values) > 1 for values in settings.values()):
        raise SystemExit(f"the parts were run with different settings: {settings}")
    names = list(dict.fromkeys(o.config for o in outcomes))
    summaries = [summarize(n, [o for o in outcomes if o.config == n], cases) for n in names]
    meta = {
        **metas[0],
        "cases": len(cases),
        "skipped": 0,
        "elapsed_s": sum(m["elapsed_s"] for m in metas),
        "command": " + ".join(m["command"] for m in metas),
    }
    save(out, meta, summaries, cases, outcomes)
    return summaries


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=int, default=48)
    parser.add_argument(
        "--skip",
        type=int,
        default=0,
        help="leave out the first N cases (they are deterministic: a larger sample in parts)",
    )
    parser.add_argument("--model", default="qwen2.5-coder-0.5b")
    parser.add_argument("--budget", type=int, default=384, help="context tokens (the completion default)")
    # Shorter than the editor's defaults: 2 CPU cores read ~100-200 prompt tokens/s, and every
    # configuration sees the same current-file window, so the comparison is unaffected.
    parser.add_argument("--prefix-tokens", type=int, default=384)
    parser.add_argument("--suffix-tokens", type=int, default=64)
    parser.add_argument("--threads", type=int, help="model threads (default: CPUs - 1)")
    parser.add_argument("--configs", help=f"comma-separated subset of: {', '.join(CONFIGS)}")
    parser.add_argument("--packages", help="comma-separated pinned specs (default: %(default)s)")
    parser.add_argument(
        "--out", default=str(RESULTS / "eval_crossfile"), help="output path without extension"
    )
    parser.add_argument(
        "--combine",
        help="comma-separated result paths (without extension) of runs over consecutive parts: "
        "write their combined result to --out and exit",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    if args.combine:
        out = Path(args.out)
        combine([Path(p) for p in args.combine.split(",")], out)
        print(out.parent.joinpath(out.name + ".md").read_text(), end="")
        return 0
    sys.path.insert(0, str(REPO))
    from context.index import Index
    from server.model.loader import load_runtime

    packages = tuple(args.packages.split(",")) if args.packages else PACKAGES
    chosen = [c.strip() for c in args.configs.split(",")] if args.configs else list(CONFIGS)
    start = time.perf_counter()
    cases = build_cases(packages, args.skip + args.cases)[args.skip :]
    print(f"{len(cases)} cases from {len(packages)} packages", file=sys.stderr)
    indexes = {
        spec: Index.open(
            package_root(fetch(spec)).resolve(), WORK / "db" / f"{spec.replace('==', '-')}.sqlite"
        )
        for spec in packages
    }
    runtime = load_runtime(args.model, n_threads=args.threads)
    summaries, all_outcomes = [], []
    for name in chosen:
        t0 = time.perf_counter()
        outcomes = run_config(
            name, CONFIGS[name], cases, runtime, args.budget, indexes, args.prefix_tokens, args.suffix_tokens
        )
        summary = summarize(name, outcomes, cases)
        summaries.append(summary)
        all_outcomes.extend(outcomes)
        print(
            f"{name:<18} exact {summary.exact_match:6.1%}  edit-sim {summary.edit_similarity:.3f}  "
            f"ctx {summary.mean_context_tokens:5.0f} tok  ({time.perf_counter() - t0:.0f} s)",
            file=sys.stderr,
        )
        # Written after every configuration: a long run cut short still leaves its results.
        meta = results_meta(args, argv, packages, cases, start)
        save(Path(args.out), meta, summaries, cases, all_outcomes)
    print(markdown(summaries, results_meta(args, argv, packages, cases, start), all_outcomes))
    for index in indexes.values():
        index.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
