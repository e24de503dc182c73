"""Latency of `infiller complete` against the bare model on the same prompts, side by side in one run.

For each model and each cursor (real files: the shipped example and CPython's stdlib, which
this project did not write):
- process-cold: a fresh `infiller complete` process (model load + cold prompt), a few runs;
- kv-cold: in-process, KV cache reset before every call (what evaluations do);
- warm: the same cursor again with the KV prefix reused;
- typed: one more character typed at the cursor (the next keystroke), KV prefix reused — what
  the prompt layout (context, prefix, then a short suffix) is for;
- bare: llama-cpp-python's own `create_completion` on the exact same prompt text, greedy, with
  `max_tokens` equal to what infiller generated, cache reset first — the floor.
The ratio infiller/bare on kv-cold calls is the overhead of our pipeline.

    .venv/bin/python -m bench.complete_latency [--models qwen2.5-coder-0.5b qwen2.5-coder-1.5b] [--cases 20]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import sysconfig
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from server.completion import Completer
from server.model.registry import load_registry, resolve
from server.model.runtime import model_threads
from server.request import CompletionContext

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"


def cursors(count: int) -> list[tuple[Path, int, int]]:
    """Mid-line and empty-line cursors in real files, deterministic."""
    files = [
        ROOT / "examples/invoice/invoice/report.py",
        ROOT / "examples/invoice/invoice/tax.py",
        Path(sysconfig.get_paths()["stdlib"]) / "json/decoder.py",
        Path(sysconfig.get_paths()["stdlib"]) / "textwrap.py",
        Path(sysconfig.get_paths()["stdlib"]) / "shlex.py",
    ]
    out: list[tuple[Path, int, int]] = []
    for path in files:
        lines = path.read_text().split("\n")
        picks = [i for i, ln in enumerate(lines) if " = " in ln and not ln.lstrip().startswith("#")]
        step = max(1, len(picks) // 6)
        for i in picks[::step][:6]:
            out.append((path, i, lines[i].index(" = ") + 3))
    return out[:count]


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


@dataclass
class Row:
    file: str
    line: int
    col: int
    prompt_tokens: int
    generated: int
    kv_cold_ms: float
    warm_ms: float
    typed_ms: float
    bare_ms: float
    typed_reused_tokens: int
    typed_prompt_tokens: int
    completion: str | None
    reason: str
    exact: bool


TIMED = ("kv_cold_ms", "warm_ms", "typed_ms", "bare_ms")


def bench_model(name: str, count: int, process_runs: int, threads: int) -> dict[str, object]:
    import llama_cpp

    spec = load_registry().get(name)
    completer = Completer.load(name, threads=threads)
    # The same context size and thread count on both sides (llama-cpp's own default is half the CPUs).
    bare = llama_cpp.Llama(
        model_path=str(resolve(spec)), n_ctx=4096, n_threads=threads, n_threads_batch=threads, verbose=False
    )
    rows: list[Row] = []
    for path, line, col in cursors(count):
        lines = path.read_text().split("\n")
        answer = lines[line][col:]
        # The user is typing this line: the rest of it is not there yet.
        lines[line] = lines[line][:col]
        req = CompletionContext.at(path, "\n".join(lines), line, col)
        cold = completer.complete(req, reset_cache=True)
        warm = completer.complete(req)
        lines[line] += answer[:1]
        typed = completer.complete(CompletionContext.at(path, "\n".join(lines), line, col + 1))
        prompt = cold.prompt.text if cold.prompt else ""
        bare.reset()
        start = time.perf_counter()
        bare.create_completion(prompt, max_tokens=max(1, cold.tokens["generated"]), temperature=0.0)
        bare_ms = (time.perf_counter() - start) * 1000
        rows.append(
            Row(
                file=path.name,
                line=line + 1,
                col=col + 1,
                prompt_tokens=cold.tokens["prompt"],
                generated=cold.tokens["generated"],
                kv_cold_ms=cold.timings["total_ms"],
                warm_ms=warm.timings["total_ms"],
                typed_ms=typed.timings["total_ms"],
                bare_ms=round(bare_ms, 1),
                typed_reused_tokens=typed.tokens["reused"],
                typed_prompt_tokens=typed.tokens["prompt"],
                completion=cold.text,
                reason=cold.reason,
                exact=(cold.text or "").strip() == answer.strip(),
            )
        )
    process_ms = []
    path, line, col = cursors(1)[0]
    for _ in range(process_runs):
        start = time.perf_counter()
        cmd = [sys.executable, "-m", "server", "complete", "--no-context", "--model", name]
        subprocess.run([*cmd, f"{path}:{line + 1}:{col + 1}"], check=True, capture_output=True)
        process_ms.append((time.perf_counter() - start) * 1000)
    timed = {k: [float(getattr(r, k)) for r in rows] for k in TIMED}
    return {
        "model": name,
        "cases": len(rows),
        "p50_ms": {k: round(statistics.median(v), 1) for k, v in timed.items()},
        "p95_ms": {k: round(pct(v, 95), 1) for k, v in timed.items()},
        "process_cold_p50_ms": round(statistics.median(process_ms), 1) if process_ms else None,
        "infiller_over_bare_p50": round(statistics.median([r.kv_cold_ms / r.bare_ms for r in rows]), 3),
        "typed_over_kv_cold_p50": round(statistics.median([r.typed_ms / r.kv_cold_ms for r in rows]), 3),
        "typed_reused_share": round(
            sum(r.typed_reused_tokens for r in rows) / max(1, sum(r.typed_prompt_tokens for r in rows)), 3
        ),
        "exact_match": round(sum(r.exact for r in rows) / max(1, len(rows)), 3),
        "mean_prompt_tokens": round(statistics.mean([float(r.prompt_tokens) for r in rows]), 1),
        "rows": [asdict(r) for r in rows],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--models", nargs="+", default=["qwen2.5-coder-0.5b", "qwen2.5-coder-1.5b"])
    parser.add_argument("--cases", type=int, default=20)
    parser.add_argument("--process-runs", type=int, default=5)
    parser.add_argument("--threads", type=int, default=model_threads(), help="model threads, both sides")
    args = parser.parse_args()
    results = []
    for model in args.models:
        results.append(bench_model(model, args.cases, args.process_runs, args.threads))
        write(results, args.threads)
    return 0


def write(results: list[dict[str, object]], threads: int) -> None:
    """Results so far (written after each model, so a long run leaves what it measured)."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "complete_latency.json").write_text(
        json.dumps({"threads": threads, "models": results}, indent=2)
    )
    lines = [
        "| model | cases | prompt tokens | process-cold p50 | KV-cold p50 / p95 | next keystroke p50 / p95 "
        "| same cursor again p50 | bare llama-cpp p50 | infiller / bare | keystroke / cold | KV reused |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        p50, p95 = r["p50_ms"], r["p95_ms"]
        assert isinstance(p50, dict) and isinstance(p95, dict)
        lines.append(
            f"| {r['model']} | {r['cases']} | {r['mean_prompt_tokens']} | {r['process_cold_p50_ms']} ms "
            f"| {p50['kv_cold_ms']} / {p95['kv_cold_ms']} ms | {p50['typed_ms']} / {p95['typed_ms']} ms "
            f"| {p50['warm_ms']} ms | {p50['bare_ms']} ms | {r['infiller_over_bare_p50']} "
            f"| {r['typed_over_kv_cold_p50']} | {r['typed_reused_share']:.0%} |"
        )
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    table = (
        "\n".join(lines) + f"\n\n{threads} model thread(s) on both sides; load average at the end: {load}.\n"
    )
    (RESULTS / "complete_latency.md").write_text(table)
    print(table, flush=True)


if __name__ == "__main__":
    sys.exit(main())
