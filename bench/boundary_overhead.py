"""What the doors cost: one prompt, read and continued four ways, side by side in one run.

- in-process: `Runtime(LlamaEngine)` in this process (the old architecture);
- process: `ProcessRuntime`, the model in its supervised child process (what every door uses);
- daemon: `infiller daemon`'s llama.cpp-compatible `POST /completion` over loopback HTTP;
- bare llama.cpp: llama.cpp's own `llama-server` (built by bench/peer/build_llama_server.sh from
  the sources vendored in the llama-cpp-python sdist), same GGUF, same threads, same request.

Each round runs every way once on the same token ids, in rotating order, with the KV cache
emptied first, a fixed number of generated tokens and greedy decoding, so the ways differ only
in their transport. Reported: median wall time per way and its ratio over in-process and over bare
llama.cpp, with the load average. Run: `python -m bench.boundary_overhead [--model M] [--rounds N]`.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from bench.replay.procs import free_port

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results"
LLAMA_SERVER = Path.home() / ".cache" / "infiller" / "llama-server" / "0.3.36" / "llama-server"
# A FIM prompt of ordinary size: the example repository's discount function with its context.
SOURCE = REPO / "examples" / "invoice" / "invoice" / "discounts.py"
GENERATED_TOKENS = 16


def wait_healthy(url: str, proc: subprocess.Popen[bytes], timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{url}: the server exited with {proc.returncode}")
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise TimeoutError(f"{url} did not become healthy")


def http_way(url: str, tokens: list[int]) -> Callable[[], float]:
    body = {
        "prompt": tokens,
        "n_predict": GENERATED_TOKENS,
        "cache_prompt": False,
        "temperature": 0,
        "ignore_eos": True,
        "samplers": ["top_k"],
        "top_k": 1,
    }

    def run() -> float:
        start = time.perf_counter()
        reply = httpx.post(f"{url}/completion", json=body, timeout=600)
        reply.raise_for_status()
        return (time.perf_counter() - start) * 1000

    return run


def backend_way(backend: object, tokens: list[int]) -> Callable[[], float]:
    def run() -> float:
        start = time.perf_counter()
        backend.reset()  # type: ignore[attr-defined]
        backend.generate(tokens, max_tokens=GENERATED_TOKENS, on_text=lambda _: True)  # type: ignore[attr-defined]
        return (time.perf_counter() - start) * 1000

    return run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--model", default="qwen2.5-coder-0.5b")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--out", default=str(RESULTS / "boundary_overhead"))
    args = parser.parse_args(argv)
    sys.path.insert(0, str(REPO))
    from server.completion import Completer
    from server.model.llamacpp import LlamaEngine
    from server.model.process import ProcessRuntime
    from server.model.registry import load_registry, resolve
    from server.model.runtime import Runtime
    from server.model.selftest import configure
    from server.request import CompletionContext

    spec = load_registry().get(args.model)
    path = resolve(spec)
    # The configuration the daemon will run (the self-test's, with these threads), for every way.
    config = configure(spec, path, threads=args.threads)
    local = Runtime(LlamaEngine(path, spec.family, config=config), spec)
    process = ProcessRuntime(spec, path, config)
    text = SOURCE.read_text()
    line = text.split("\n").index("    return ")
    prompt = Completer(process).build_prompt(CompletionContext.at(SOURCE, text, line, len("    return ")))
    tokens = prompt.tokens + process.tokenize(prompt.heal)
    procs: list[subprocess.Popen[bytes]] = []
    ways: dict[str, Callable[[], float]] = {
        "in-process": backend_way(local, tokens),
        "process": backend_way(process, tokens),
    }
    try:
        port = free_port()
        daemon = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "server",
                "daemon",
                "--port",
                str(port),
                "--model",
                args.model,
                "--threads",
                str(args.threads),
            ],
            cwd=REPO,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        procs.append(daemon)
        wait_healthy(f"http://127.0.0.1:{port}", daemon)
        ways["daemon"] = http_way(f"http://127.0.0.1:{port}", tokens)
        if LLAMA_SERVER.exists():
            lport = free_port()
            bare = subprocess.Popen(
                [
                    str(LLAMA_SERVER),
                    "-m",
                    str(path),
                    "--port",
                    str(lport),
                    "--host",
                    "127.0.0.1",
                    "-t",
                    str(args.threads),
                    "-tb",
                    str(args.threads),
                    "-c",
                    "4096",
                    "-b",
                    "128",
                    "-ub",
                    "128",
                    "--no-warmup",
                    *([] if config.extra_bufts else ["--no-repack"]),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            procs.append(bare)
            wait_healthy(f"http://127.0.0.1:{lport}", bare)
            ways["bare llama.cpp"] = http_way(f"http://127.0.0.1:{lport}", tokens)
        load_before = os.getloadavg()
        times: dict[str, list[float]] = {name: [] for name in ways}
        names = list(ways)
        for name in names:  # warm-up: page cache, first-call costs
            ways[name]()
        for r in range(args.rounds):
            order = names[r % len(names) :] + names[: r % len(names)]
            for name in order:
                times[name].append(ways[name]())
            print(
                f"round {r + 1}: " + ", ".join(f"{n} {times[n][-1]:.0f} ms" for n in names), file=sys.stderr
            )
        load_after = os.getloadavg()
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(timeout=30)
        process.close()
    median = {name: statistics.median(values) for name, values in times.items()}
    base = median["in-process"]
    bare_ms = median.get("bare llama.cpp")
    rows = [
        f"| {name} | {median[name]:.0f} | {median[name] / base:.3f} | "
        + (f"{median[name] / bare_ms:.3f}" if bare_ms else "-")
        + " |"
        for name in names
    ]
    report = "\n".join(
        [
            f"Model {args.model}, {config.describe()}, prompt {len(tokens)} tokens (cache emptied "
            f"each time), {GENERATED_TOKENS} generated; {args.rounds} rounds in rotating order; median ms.",
            "",
            "| way | median ms | / in-process | / bare llama.cpp |",
            "|---|---:|---:|---:|",
            *rows,
            "",
            f"Load average before {load_before[0]:.2f}, after {load_after[0]:.2f}; "
            f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs.",
        ]
    )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(
        json.dumps(
            {
                "model": args.model,
                "threads": args.threads,
                "prompt_tokens": len(tokens),
                "times_ms": times,
                "median_ms": median,
                "load": [load_before, load_after],
            },
            indent=1,
        )
    )
    out.with_suffix(".md").write_text(report + "\n")
    print(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
