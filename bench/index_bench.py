"""Index and retrieval benchmark on a large real repository (the Django sdist by default).

Measures, side by side in one run: raw tree-sitter parse time of the indexed files (the floor),
cold index time and files/s, warm start after a restart (nothing changed), re-index of one
edited file, retrieval latency p50/p95, database size and RSS. The sdist is fetched from the
package index at run time into bench/work/ (never committed).

    .venv/bin/python -m bench.index_bench            # writes bench/results/index.json and index.md
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import resource
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from bench.sdist import fetch_sdist

REPO = Path(__file__).resolve().parent.parent
WORK = REPO / "bench" / "work"
RESULTS = REPO / "bench" / "results"
DEFAULT_SPEC = "django==5.1.15"
# Enough requests for a stable p95 while keeping the run short on 2 cores.
RETRIEVAL_REQUESTS = 300
EDIT_REPEATS = 25
# Keystrokes typed at each cursor in the typing scenario.
TYPING_KEYSTROKES = 10
SEED = 7


def fetch(spec: str) -> Path:
    return fetch_sdist(spec, WORK)


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))] if ordered else 0.0


def rss_mb() -> float:
    """Peak resident set size of this process (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def current_rss_mb() -> float:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return rss_mb()


def cpu_s() -> float:
    """CPU seconds of this process and its finished children: robust to other load on the machine."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def token_counter(model: str | None) -> tuple[Callable[[str], int], str]:
    """The model's own tokenizer (vocabulary only, no weights) when available, else a regex."""
    if model:
        try:
            import llama_cpp

            from server.model.registry import load_registry, resolve

            path = resolve(load_registry().get(model))
            llm = llama_cpp.Llama(str(path), vocab_only=True, verbose=False)
            return (lambda text: len(llm.tokenize(text.encode("utf-8"), add_bos=False, special=False))), model
        except Exception as exc:  # the benchmark still runs without the model
            logging.warning("tokenizer of %s unavailable (%s); using a regex counter", model, exc)
    import re

    pattern = re.compile(r"\w+|[^\w\s]")
    return (lambda text: len(pattern.findall(text))), "regex"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--spec", default=DEFAULT_SPEC, help="pinned sdist to index")
    parser.add_argument("--requests", type=int, default=RETRIEVAL_REQUESTS)
    parser.add_argument("--budget", type=int, default=384)
    parser.add_argument("--model", default="qwen2.5-coder-0.5b", help="tokenizer for budgets ('' for regex)")
    parser.add_argument("--out", default=str(RESULTS / "index"))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    sys.path.insert(0, str(REPO))

    from context.index import Index
    from context.retrieve import DEFAULT_SOURCES, SOURCES, Retriever
    from context.syntax import language_for_path, parse
    from context.walk import WalkOptions, is_binary_or_huge, workspace_files

    root = fetch(args.spec).resolve()
    db = WORK / "index-bench.sqlite"
    results: dict[str, Any] = {"repository": args.spec, "cpus": os.cpu_count()}

    # Floor: the same files, read and parsed by tree-sitter, nothing else (one thread).
    files = [
        f
        for f in workspace_files(root, WalkOptions())
        if not is_binary_or_huge((root / f).read_bytes(), WalkOptions())
    ]
    start, start_cpu = time.perf_counter(), cpu_s()
    size = 0
    for rel in files:
        data = (root / rel).read_bytes()
        size += len(data)
        parse(language_for_path(rel) or "python", data)
    parse_s = time.perf_counter() - start
    parse_cpu = cpu_s() - start_cpu
    results["files"] = len(files)
    results["source_mb"] = round(size / 1e6, 2)
    results["parse_only_s"] = round(parse_s, 3)
    print(f"raw parse: {len(files)} files, {size / 1e6:.1f} MB in {parse_s:.2f} s", file=sys.stderr)

    # Cold index.
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    start, start_cpu = time.perf_counter(), cpu_s()
    index = Index.open(root, db)
    stats = index.refresh()
    cold_s = time.perf_counter() - start
    cold_cpu = cpu_s() - start_cpu  # worker processes are reaped by now, so they are counted
    results["cold_index_s"] = round(cold_s, 3)
    results["cold_files_per_s"] = round(stats.parsed / cold_s, 1)
    results["cold_vs_parse"] = round(cold_s / parse_s, 2)
    results["parse_only_cpu_s"] = round(parse_cpu, 3)
    results["cold_index_cpu_s"] = round(cold_cpu, 3)
    results["cold_vs_parse_cpu"] = round(cold_cpu / parse_cpu, 2)
    results["symbols"] = stats.symbols
    results["rss_after_cold_mb"] = round(current_rss_mb(), 1)
    index.close()
    print(f"cold index: {cold_s:.2f} s ({cold_s / parse_s:.2f}x parse)", file=sys.stderr)

    # Warm start in a fresh process: open + refresh with nothing changed.
    code = (
        "import time,sys; t=time.perf_counter(); from context.index import Index; from pathlib import Path; "
        f"i=Index.open(Path({str(root)!r}), Path({str(db)!r})); s=i.refresh(); "
        "print(time.perf_counter()-t, s.parsed)"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    warm_s, warm_parsed = out.stdout.split()
    results["warm_start_s"] = round(float(warm_s), 3)
    results["warm_start_parsed"] = int(warm_parsed)
    print(f"warm start (new process, imports included): {float(warm_s):.2f} s", file=sys.stderr)

    index = Index.open(root, db)
    start = time.perf_counter()
    index.refresh()
    results["warm_refresh_in_process_s"] = round(time.perf_counter() - start, 3)
    results["db_mb"] = round(index.stats().db_bytes / 1e6, 1)

    # One edited file: an editor buffer change, and a save picked up from disk.
    rng = random.Random(SEED)
    by_size = sorted((f for f in files if f.endswith(".py")), key=lambda f: (root / f).stat().st_size)

    def buffer_edits(rel: str) -> dict[str, Any]:
        """Typing line after line in the middle of an open buffer: each edit adds one statement."""
        base = (root / rel).read_text()
        lines = base.split("\n")
        # A plain statement near the middle of the file, inside a function body.
        middle = min(
            (
                i
                for i, text in enumerate(lines)
                if text.startswith("        ") and text.strip().startswith("self.")
            ),
            key=lambda i: abs(i - len(lines) // 2),
            default=len(lines) // 2,
        )
        indent = lines[middle][: len(lines[middle]) - len(lines[middle].lstrip())]
        start = time.perf_counter()
        index.set_buffer(root / rel, base)  # the editor opens the file: a full parse
        index.flush_buffers()
        open_ms = (time.perf_counter() - start) * 1000
        timings = []
        for i in range(EDIT_REPEATS):
            lines.insert(middle + 1 + i, f"{indent}edited_{i} = {i}")
            start = time.perf_counter()
            index.set_buffer(root / rel, "\n".join(lines))
            index.flush_buffers()  # large buffers are debounced: time the indexing work itself
            timings.append((time.perf_counter() - start) * 1000)
        index.drop_buffer(root / rel)
        return {
            "path": rel,
            "lines": base.count("\n") + 1,
            "edited_line": middle + 1,
            "open_ms": round(open_ms, 2),
            "p50_ms": round(percentile(timings, 0.5), 2),
            "p95_ms": round(percentile(timings, 0.95), 2),
        }

    results["reindex_largest_file"] = buffer_edits(by_size[-1])
    results["reindex_p90_file"] = buffer_edits(by_size[int(len(by_size) * 0.9)])
    disk_ms = []
    medium = sorted(files, key=lambda f: (root / f).stat().st_size)[len(files) // 2]
    original = (root / medium).read_bytes()
    try:
        for i in range(EDIT_REPEATS):
            (root / medium).write_bytes(original + f"\n\ndef saved_{i}():\n    return {i}\n".encode())
            start = time.perf_counter()
            index.reindex_file(medium)
            disk_ms.append((time.perf_counter() - start) * 1000)
    finally:
        (root / medium).write_bytes(original)
        index.reindex_file(medium)
    results["reindex_median_file"] = {
        "path": medium,
        "lines": original.count(b"\n") + 1,
        "p50_ms": round(percentile(disk_ms, 0.5), 2),
        "p95_ms": round(percentile(disk_ms, 0.95), 2),
    }
    for key in ("reindex_largest_file", "reindex_p90_file", "reindex_median_file"):
        print(f"{key}: {results[key]}", file=sys.stderr)

    # Retrieval latency at random cursors in Python files (end of a non-blank line).
    count_tokens, tokenizer = token_counter(args.model or None)
    results["tokenizer"] = tokenizer
    python_files = [f for f in files if f.endswith(".py") and "/tests/" not in f]
    cursors = []
    while len(cursors) < args.requests:
        rel = rng.choice(python_files)
        text = (root / rel).read_text()
        lines = text.split("\n")
        candidates = [i for i, line in enumerate(lines) if line.strip() and not line.lstrip().startswith("#")]
        if candidates:
            line = rng.choice(candidates)
            cursors.append((rel, text, line, len(lines[line])))
    results["retrieval"] = {}
    without_usages = tuple(s for s in DEFAULT_SOURCES if s != "usages")
    for name, sources in (("default", DEFAULT_SOURCES), ("without usages", without_usages), ("all", SOURCES)):
        retriever = Retriever(index, sources)
        if "repomap" in sources:
            start = time.perf_counter()
            retriever.repomap.ranked()
            results["repomap_build_s"] = round(time.perf_counter() - start, 3)
        latencies, tokens = [], []
        for rel, text, line, column in cursors:
            start = time.perf_counter()
            result = retriever.retrieve(root / rel, text, line, column, args.budget, count_tokens)
            latencies.append((time.perf_counter() - start) * 1000)
            tokens.append(result.used_tokens)
        results["retrieval"][name] = {
            "sources": list(sources),
            "requests": len(latencies),
            "p50_ms": round(percentile(latencies, 0.5), 2),
            "p95_ms": round(percentile(latencies, 0.95), 2),
            "max_ms": round(max(latencies), 2),
            "mean_used_tokens": round(sum(tokens) / len(tokens), 1),
        }
        print(f"retrieval {name}: {results['retrieval'][name]}", file=sys.stderr)
    # Typing: keystrokes at one cursor (the LSP's case): each types one more character of a name.
    retriever = Retriever(index, DEFAULT_SOURCES)
    typing_ms = []
    for rel, text, line, column in cursors[: args.requests // TYPING_KEYSTROKES]:
        lines = text.split("\n")
        for typed in range(1, TYPING_KEYSTROKES + 1):
            lines_now = [*lines[:line], lines[line][:column] + " self.get_"[:typed], *lines[line + 1 :]]
            start = time.perf_counter()
            retriever.retrieve(
                root / rel, "\n".join(lines_now), line, column + typed, args.budget, count_tokens
            )
            typing_ms.append((time.perf_counter() - start) * 1000)
    results["retrieval"]["typing"] = {
        "sources": list(DEFAULT_SOURCES),
        "requests": len(typing_ms),
        "p50_ms": round(percentile(typing_ms, 0.5), 2),
        "p95_ms": round(percentile(typing_ms, 0.95), 2),
        "max_ms": round(max(typing_ms), 2),
    }
    print(f"retrieval typing: {results['retrieval']['typing']}", file=sys.stderr)
    results["peak_rss_mb"] = round(rss_mb(), 1)
    index.close()

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(results, indent=2) + "\n")
    out.with_suffix(".md").write_text(markdown(results))
    print(markdown(results))
    return 0


def markdown(r: dict[str, Any]) -> str:
    d, a, t = r["retrieval"]["default"], r["retrieval"]["all"], r["retrieval"]["typing"]
    w = r["retrieval"]["without usages"]
    big, p90, med = r["reindex_largest_file"], r["reindex_p90_file"], r["reindex_median_file"]
    rows = [
        ("files indexed", f"{r['files']} ({r['source_mb']} MB of source), {r['symbols']} symbols", ""),
        (
            "raw tree-sitter parse (floor, 1 thread)",
            f"{r['parse_only_s']:.2f} s wall, {r['parse_only_cpu_s']:.2f} s CPU",
            "",
        ),
        (
            "cold index",
            f"{r['cold_index_s']:.2f} s, {r['cold_files_per_s']:.0f} files/s "
            f"({r['cold_vs_parse']:.2f}x parse); {r['cold_index_cpu_s']:.2f} s CPU "
            f"({r['cold_vs_parse_cpu']:.2f}x parse CPU)",
            "within 3x of parse",
        ),
        (
            "warm start after restart (new process)",
            f"{r['warm_start_s']:.2f} s, {r['warm_start_parsed']} re-parsed",
            "< 2 s",
        ),
        (
            "re-index one edited file (buffer)",
            f"p50 {big['p50_ms']:.1f} ms / p95 {big['p95_ms']:.1f} ms (largest file, {big['lines']} lines, "
            f"typing at line {big.get('edited_line', '?')}; opening it: {big.get('open_ms', 0):.0f} ms)",
            "< 50 ms",
        ),
        (
            "re-index one edited file (buffer)",
            f"p50 {p90['p50_ms']:.1f} ms / p95 {p90['p95_ms']:.1f} ms "
            f"(90th-percentile file, {p90['lines']} lines)",
            "< 50 ms",
        ),
        (
            "re-index one saved file (disk)",
            f"p50 {med['p50_ms']:.1f} ms / p95 {med['p95_ms']:.1f} ms (median file, {med['lines']} lines)",
            "< 50 ms",
        ),
        (
            f"retrieval, default sources ({', '.join(d['sources'])}), a new file each request",
            f"p50 {d['p50_ms']:.1f} ms / p95 {d['p95_ms']:.1f} ms",
            "p95 < 20 ms",
        ),
        (
            "retrieval while typing (10 keystrokes per cursor, default sources)",
            f"p50 {t['p50_ms']:.1f} ms / p95 {t['p95_ms']:.1f} ms",
            "p95 < 20 ms",
        ),
        ("retrieval, all sources", f"p50 {a['p50_ms']:.1f} ms / p95 {a['p95_ms']:.1f} ms", ""),
        (
            f"retrieval, default without usage lines ({', '.join(w['sources'])}), same requests",
            f"p50 {w['p50_ms']:.1f} ms / p95 {w['p95_ms']:.1f} ms",
            "",
        ),
        ("repo map build (once per index change, lazily)", f"{r.get('repomap_build_s', 0):.2f} s", ""),
        ("database size", f"{r['db_mb']} MB", ""),
        ("RSS after cold index / peak", f"{r['rss_after_cold_mb']:.0f} MB / {r['peak_rss_mb']:.0f} MB", ""),
    ]
    lines = [
        f"# Index benchmark: {r['repository']}",
        "",
        f"{r['cpus']} CPU cores; budgets counted with the `{r['tokenizer']}` tokenizer; "
        f"{d['requests']} retrievals at random line ends. Command: `python -m bench.index_bench`.",
        "",
        "| measure | result | aim |",
        "|---|---|---|",
    ]
    lines += [f"| {m} | {v} | {aim} |" for m, v, aim in rows]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
