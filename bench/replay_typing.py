"""The typing replay: what a user feels while typing, infiller side by side with a llama.vim-style peer.

A simulated user types function bodies from pinned sdists of different styles (bench/replay/corpus.py)
with a deterministic key model (bench/replay/keys.py: bursts, pauses after Enter and now and then
after `(`, `:`, `=`), and takes a suggestion (Tab, line or words) when it matches what they are about
to type and has been visible long enough to read (bench/replay/accept.py). The same replay, with the
same key timings and the same acceptance rule, drives infiller (the real server over LSP stdio, as VS
Code would) and the peer: llama.cpp's own llama-server, built from the llama.cpp vendored in the
llama-cpp-python sdist infiller pins, on the same GGUF and threads, driven as llama.vim drives it
(bench/peer/llamavim_client.py). With `--daemon`, the same llama.vim client also types against
`infiller daemon` (bench/replay/daemon.py): what a llama.vim user gets by pointing the plugin at it.

    .venv/bin/python -m bench.replay_typing --models qwen2.5-coder-1.5b,qwen2.5-coder-0.5b --threads 1,2
    .venv/bin/python -m bench.replay_typing --files 1 --no-peer      # a quick look

Writes bench/results/replay_typing.{json,md}: per engine × model × threads, characters saved,
acceptance, pause → suggestion latency, keystroke → suggestion latency, cancellations, model CPU time
per accepted character and peak RSS, with infiller's numbers as ratios over the peer's, the machine
and the load average before and after each run. The peer is built on first use
(bench/peer/build_llama_server.sh, ~10-15 min on 2 cores) and cached.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.replay import metrics
from bench.replay.corpus import REGIONS, Region, parse_regions, prepare
from bench.replay.editor import EDITORS
from bench.replay.engine import User
from bench.replay.procs import cpu_seconds, machine, peak_rss_mb

REPO = Path(__file__).resolve().parent.parent
WORK = REPO / "bench" / "work"
RESULTS = REPO / "bench" / "results"
BUILD_PEER = REPO / "bench" / "peer" / "build_llama_server.sh"
DEFAULT_MODELS = "qwen2.5-coder-1.5b"
DEFAULT_THREADS = "1"
# The engines that run infiller's code (the language server; the daemon behind llama.vim's client).
INFILLER_ENGINES = ("infiller", "daemon")
EDITOR_NOTES = {
    "plain": "plain (every key inserts its character, as in Vim without auto-pairs)",
    "vscode": "VS Code's (it closes brackets and quotes; the user types over or steps past the closers; "
    "it asks for completion items too as word and trigger characters are typed)",
}


def measured_code() -> dict[str, Any]:
    """Which infiller was measured: the commit, and a digest of uncommitted changes to server/, context/."""

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True).stdout

    diff = git("diff", "HEAD", "--", "server", "context")
    untracked = git("ls-files", "--others", "--exclude-standard", "--", "server", "context")
    return {
        "commit": git("rev-parse", "HEAD").strip(),
        "server_commit": git("log", "-1", "--format=%H", "--", "server", "context").strip(),
        "server_dirty": bool(diff or untracked),
        "server_diff_sha1": hashlib.sha1((diff + untracked).encode()).hexdigest()[:12]
        if diff or untracked
        else None,
    }


def model_path(model: str) -> Path:
    infiller = Path(sys.executable).parent / "infiller"
    out = subprocess.run([str(infiller), "models", "path", model], capture_output=True, text=True, check=True)
    return Path(out.stdout.strip())


def peer_binary() -> Path:
    started = time.perf_counter()
    out = subprocess.run(["bash", str(BUILD_PEER)], capture_output=True, text=True, check=True)
    if time.perf_counter() - started > 5:
        print(out.stderr[-2000:], file=sys.stderr)
    return Path(out.stdout.strip().splitlines()[-1])


async def run_one(
    engine: str, model: str, threads: int, workspace: Path, regions: list[Region], args: argparse.Namespace
) -> dict[str, Any]:
    """One engine, one model, one thread count: the whole replay, and its numbers."""
    user: User
    if engine == "infiller":
        from bench.replay.lsp_driver import InfillerDriver

        driver: Any = InfillerDriver(
            model,
            threads,
            lambda v, t, k, r=0: user.show(v, t, k, r),
            args.settings,
            updates=args.updates,
            cursor=args.cursor,
            menu=args.editor == "vscode",
        )
    else:
        from bench.peer.llamavim_client import LlamaServer, LlamaVimDriver, repacking_runs
        from bench.replay.daemon import DaemonServer

        server: LlamaServer | DaemonServer
        if engine == "daemon":
            server = DaemonServer(model, threads, workspace, log=WORK / f"daemon-{model}-{threads}t.log")
        else:
            gguf = model_path(model)
            server = LlamaServer(
                args.peer_binary,
                gguf,
                threads,
                ctx=args.peer_ctx,
                log=WORK / f"llama-server-{model}-{threads}t.log",
                repack=repacking_runs(model, gguf),
            )
        driver = LlamaVimDriver(server, lambda v, t, k: user.show(v, t, k))
    user = User(driver, autoclose=args.editor == "vscode")
    measured = measured_code()  # the server process about to start runs this code
    load_before = os.getloadavg()
    await driver.start(workspace)
    pids = driver.pids()
    cpu0 = {k: cpu_seconds(p) for k, p in pids.items()}
    started = time.perf_counter()
    try:
        for region in regions:
            await user.type_region(region, region.path.read_text(encoding="utf-8"))
            print(f"  {engine} {model} {threads}t: {region.spec.id} done", file=sys.stderr)
    finally:
        pids = driver.pids() or pids
        cpu1 = {k: cpu_seconds(p) for k, p in pids.items()}
        rss = {k: peak_rss_mb(p) for k, p in pids.items()}
        details = await driver.stop()
    duration = time.perf_counter() - started
    total_chars = sum(len(r.text) for r in regions)
    summary = metrics.summarize(user.log.edits, user.log.shows, user.log.accepts, total_chars)

    def used(key: str) -> float | None:
        end = cpu1.get(key)
        return None if end is None else end - (cpu0.get(key) or 0.0)

    model_cpu, server_cpu = used("model"), used("server")
    accepted = summary["accepted_chars"]
    assert isinstance(accepted, int)
    distinct = {p: rss[k] for k, p in pids.items()}
    return {
        "engine": engine,
        "model": model,
        "threads": threads,
        "measured": measured if engine in INFILLER_ENGINES else None,
        **summary,
        "cancellations": details.get("cancellations"),
        "model_cpu_s": None if model_cpu is None else round(model_cpu, 1),
        "server_cpu_s": None
        if server_cpu is None or pids.get("server") == pids.get("model")
        else round(server_cpu, 1),
        "model_ms_per_accepted_char": round(1000 * model_cpu / accepted, 1)
        if model_cpu and accepted
        else None,
        "peak_rss_mb": {**rss, "total": round(sum(x for x in distinct.values() if x), 1)},
        "first_suggestion_s": user.log.first_suggestion_s,
        "editor": args.editor,
        "duration_s": round(duration, 1),
        "load_average": {"before": load_before, "after": os.getloadavg()},
        "details": details,
        "records": (
            {
                "edits": [vars(e) for e in user.log.edits],
                "shows": [vars(s) for s in user.log.shows],
                "accepts": [vars(a) for a in user.log.accepts],
            }
            if args.keep_records
            else None
        ),
    }


def _cell(x: Any, fmt: str = "{}") -> str:
    return "—" if x is None else fmt.format(x)


def _pct(x: float | None) -> str:
    return "—" if x is None else f"{100 * x:.1f}%"


def _ms(x: float | None) -> str:
    return "not served" if x is None else f"{x:.0f}"


def markdown(report: dict[str, Any]) -> str:
    runs = report["runs"]
    lines = [
        "# Typing replay: infiller and a llama.vim-style llama-server, same keys, same acceptance",
        "",
        *(f"`{c}`" for c in report["commands"]),
        "",
        "The regions typed: "
        + "; ".join(f"`{r['id']}` ({r['chars']} chars)" for r in report["regions"])
        + ".",
        "Pause → suggestion: for every planned typing pause ≥ 400 ms, the time from the last keystroke to"
        " a shown suggestion (a pause with none counts as not served). Model ms per accepted char:"
        " CPU time of the process running the model during the replay / accepted characters."
        " Peak RSS: VmHWM of the server plus its model process (the peer: llama-server).",
        "The editor: " + ", ".join(sorted({EDITOR_NOTES[r.get("editor", "plain")] for r in runs})) + ".",
        "",
        "| engine | model | threads | chars saved | acceptance | pause→sugg p50 ms | p95 ms | pauses ≤ 1 s"
        " | key→sugg p50 ms | p95 ms | cancellations | model ms / accepted char | peak RSS MiB |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in runs:
        p, k = r["pause_to_suggestion_ms"], r["keystroke_to_suggestion_ms"]
        lines.append(
            f"| {r['engine']} | {r['model']} | {r['threads']} | {_pct(r['chars_saved'])}"
            f" ({r['accepted_chars']}/{r['total_chars']}) | {_pct(r['acceptance_rate'])}"
            f" ({r['accepted']}/{r['shown']}) | {_ms(p['p50'])} | {_ms(p['p95'])}"
            f" | {_pct(r['pauses_served_within_1s'])} ({r['pauses']} pauses)"
            f" | {_ms(k['p50'])} | {_ms(k['p95'])}"
            f" | {_cell(r['cancellations'])} | {_cell(r['model_ms_per_accepted_char'])}"
            f" | {_cell(r['peak_rss_mb']['total'])} |"
        )
    ratios = report["ratios"]
    if ratios:
        lines += [
            "",
            "## infiller / peer (with `--daemon`, the daemon's row too)",
            "",
            "Above 1: more for infiller (better for chars saved, acceptance and the ≤ 1 s share; worse for"
            " latencies, model time and memory).",
            "",
            "| engine | model | threads | chars saved | acceptance | pause→sugg p50 | p95 | pauses ≤ 1 s"
            " | key→sugg p50 | p95 | model ms / accepted char | peak RSS |",
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
        ]
        for q in ratios:
            lines.append(
                f"| {q.get('engine', 'infiller')} | {q['model']} | {q['threads']}"
                f" | {_cell(q['chars_saved'])} | {_cell(q['acceptance_rate'])}"
                f" | {_cell(q['pause_p50'])} | {_cell(q['pause_p95'])}"
                f" | {_cell(q['pauses_served_within_1s'])}"
                f" | {_cell(q['key_p50'])} | {_cell(q['key_p95'])} | {_cell(q['model_ms_per_accepted_char'])}"
                f" | {_cell(q['peak_rss'])} |"
            )
    m = report["machine"]
    lines += [
        "",
        f"Machine: {m.get('cpu')}, {m.get('cpus')} CPUs, {m.get('memory_gib')} GiB, {m.get('platform')}."
        " The CPUs are shared with other work; the load average is recorded around every run.",
        "",
    ]
    for r in runs:
        code = r.get("measured")
        if code:
            dirty = (
                f" plus uncommitted changes (diff {code['server_diff_sha1']})" if code["server_dirty"] else ""
            )
            lines.append(
                f"- {r['engine']} {r['model']} {r['threads']}t measured server/ and context/ at commit"
                f" {code['server_commit'][:12]}{dirty}."
            )
    for r in runs:
        la = r["load_average"]
        fmt = ", ".join
        d = r["details"]
        lines.append(
            f"- {r['engine']} {r['model']} {r['threads']}t: load average"
            f" {fmt(f'{x:.2f}' for x in la['before'])} → {fmt(f'{x:.2f}' for x in la['after'])};"
            f" ready in {d.get('ready_s')} s; typing {r['duration_s']} s;"
            f" {r['keystrokes']} keys + {r['accept_keys']} accept keys; accepts {r['accepts_by_kind']};"
            f" chars typed while on screen {r.get('typed_chars_while')};"
            f" first suggestion after opening (s) {list(r['first_suggestion_s'].values())};"
            f" model CPU {r['model_cpu_s']} s; peak RSS {r['peak_rss_mb']}"
        )
        if r["engine"] == "infiller":
            s = d["server_stats"]
            lines.append(
                f"  - requests {d['requests']}, cancelled by the client {d['cancellations']},"
                f" asked again on suggestionUpdated {d.get('updates', 0)},"
                f" completion-menu requests {d.get('menu_requests', 0)},"
                f" server: served by {s['served_by']}, no suggestion {s['no_suggestion']},"
                f" model latency {s['model_latency_ms']}"
            )
        else:
            lines.append(
                f"  - requests {d['requests']} ({d['speculative']} speculative), deferred {d['deferred']},"
                f" shown from its cache {d['cache_served']}, ring updates {d['ring_updates']}, mean prompt"
                f" {d['prompt_tokens_mean']} tokens in {d['prompt_ms_mean']} ms,"
                f" mean predicted {d['predicted_n_mean']} tokens"
            )
    if report.get("peer_command"):
        lines += [
            "",
            "Peer (the first peer run; the others differ only in -m, -t/-tb and the port): `"
            + " ".join(report["peer_command"])
            + "`",
        ]
    return "\n".join(lines) + "\n"


def ratios(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for ours in (r for r in runs if r["engine"] in INFILLER_ENGINES):
        peer = next(
            (
                r
                for r in runs
                if r["engine"] == "peer" and r["model"] == ours["model"] and r["threads"] == ours["threads"]
            ),
            None,
        )
        if peer is None:
            continue
        q = metrics.ratio
        out.append(
            {
                "engine": ours["engine"],
                "model": ours["model"],
                "threads": ours["threads"],
                "chars_saved": q(ours["chars_saved"], peer["chars_saved"]),
                "acceptance_rate": q(ours["acceptance_rate"], peer["acceptance_rate"]),
                "pause_p50": q(ours["pause_to_suggestion_ms"]["p50"], peer["pause_to_suggestion_ms"]["p50"]),
                "pause_p95": q(ours["pause_to_suggestion_ms"]["p95"], peer["pause_to_suggestion_ms"]["p95"]),
                "pauses_served_within_1s": q(
                    ours["pauses_served_within_1s"], peer["pauses_served_within_1s"]
                ),
                "key_p50": q(
                    ours["keystroke_to_suggestion_ms"]["p50"], peer["keystroke_to_suggestion_ms"]["p50"]
                ),
                "key_p95": q(
                    ours["keystroke_to_suggestion_ms"]["p95"], peer["keystroke_to_suggestion_ms"]["p95"]
                ),
                "model_ms_per_accepted_char": q(
                    ours["model_ms_per_accepted_char"], peer["model_ms_per_accepted_char"]
                ),
                "peak_rss": q(ours["peak_rss_mb"]["total"], peer["peak_rss_mb"]["total"]),
            }
        )
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default=DEFAULT_MODELS, help="registry models, comma-separated")
    parser.add_argument("--threads", default=DEFAULT_THREADS, help="thread counts, comma-separated")
    peer = parser.add_mutually_exclusive_group()
    peer.add_argument(
        "--peer", dest="peer", action="store_true", default=True, help="also run the peer (default)"
    )
    peer.add_argument("--no-peer", dest="peer", action="store_false", help="infiller only")
    parser.add_argument("--no-infiller", dest="infiller", action="store_false", help="the peer only")
    parser.add_argument(
        "--daemon",
        action="store_true",
        help="also type with llama.vim's client against `infiller daemon` (bench/replay/daemon.py)",
    )
    parser.add_argument("--files", type=int, default=None, help="type only the first N regions")
    parser.add_argument(
        "--editor",
        choices=EDITORS,
        default="plain",
        help="vscode: the editor closes brackets and quotes as VS Code does (bench/replay/editor.py); "
        "plain: every key inserts its character (Vim, Neovim)",
    )
    parser.add_argument(
        "--regions",
        default=None,
        help="other regions: name==version:package:module:function, comma-separated",
    )
    parser.add_argument("--settings", default="{}", help="extra infiller settings (JSON, camelCase)")
    parser.add_argument(
        "--no-updates",
        dest="updates",
        action="store_false",
        help="infiller's client does not announce suggestionUpdates (no early answers)",
    )
    parser.add_argument(
        "--no-cursor",
        dest="cursor",
        action="store_false",
        help="infiller's client does not send infiller/cursor after each edit (as VS Code does)",
    )
    parser.add_argument(
        "--peer-ctx", type=int, default=0, help="llama-server -c (0: the model's, as llama.vim's preset)"
    )
    parser.add_argument(
        "--keep-records", action="store_true", help="store every edit, show and accept in the JSON"
    )
    parser.add_argument("--out", default=str(RESULTS / "replay_typing"), help="output path without extension")
    parser.add_argument(
        "--append", action="store_true", help="add these runs to the report already at --out (same regions)"
    )
    args = parser.parse_args()
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    thread_counts = [int(t) for t in args.threads.split(",")]
    args.peer_binary = peer_binary() if args.peer else None
    try:
        specs = parse_regions(args.regions) if args.regions else REGIONS
    except ValueError as exc:
        parser.error(str(exc))
    workspace, regions = prepare(WORK, specs[: args.files])
    engines = [
        e for e, on in (("infiller", args.infiller), ("daemon", args.daemon), ("peer", args.peer)) if on
    ]
    runs = []
    for model in models:
        for threads in thread_counts:
            for engine in engines:
                print(f"{engine} {model} {threads} thread(s)...", file=sys.stderr)
                runs.append(asyncio.run(run_one(engine, model, threads, workspace, regions, args)))
    out = Path(args.out)
    commands = ["python -m bench.replay_typing " + " ".join(sys.argv[1:])]
    regions_info = [{"id": r.spec.id, "sdist": r.spec.sdist, "chars": len(r.text)} for r in regions]
    if args.append and out.with_suffix(".json").is_file():
        earlier = json.loads(out.with_suffix(".json").read_text())
        if earlier["regions"] != regions_info:
            raise SystemExit("--append: the report at --out typed other regions")
        runs = earlier["runs"] + runs
        commands = earlier["commands"] + commands
    report = {
        "commands": commands,
        "machine": {**machine(), "platform": platform.platform()},
        "regions": regions_info,
        "peer_command": next((r["details"]["server_command"] for r in runs if r["engine"] == "peer"), None),
        "runs": runs,
        "ratios": ratios(runs),
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    out.with_suffix(".md").write_text(markdown(report))
    print(markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
