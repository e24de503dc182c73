"""Replay typing a real file against the real server, as an editor would, and measure what users feel.

A module of a pinned sdist from the package index (not written for this project) is fetched into
bench/work/ at run time; a stretch of it is removed and typed back character by character with
realistic inter-key delays (log-normal, pauses at line ends and now and then), auto-indent after
Enter, and the user accepting a suggestion (Tab) when it matches what they were about to type.
After every keystroke the client sends didChange and an automatic inlineCompletion request,
cancelling the previous one with $/cancelRequest if it is still pending (as VS Code does).

Reports keystroke-to-shown-suggestion p50/p95, how many keystrokes got a suggestion, the cache hit
rate and the cancellation rate (from the server's own statistics) into
bench/results/replay_typing.{json,md}.

    .venv/bin/python -m bench.replay_typing --model qwen2.5-coder-0.5b
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import platform
import random
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from lsprotocol import types
from pygls.lsp.client import LanguageClient

from bench.sdist import fetch_sdist

REPO = Path(__file__).resolve().parent.parent
WORK = REPO / "bench" / "work"
RESULTS = REPO / "bench" / "results"

# The replayed file: a pinned sdist, so the numbers are reproducible.
SDIST = "requests==2.32.3"
MODULE = "src/requests/utils.py"
START_AT = "def address_in_network"
TYPED_CHARS = 1200

# Typing model: a log-normal inter-key delay (median ~140 ms, i.e. ~85 words/min bursts slowed by
# variance), a pause after Enter, and an occasional think pause.
KEY_MEDIAN_S = 0.14
KEY_SIGMA = 0.45
ENTER_PAUSE_S = 0.45
THINK_P = 0.03
THINK_S = (1.0, 2.5)
# A suggestion must have been visible this long before the next keystroke for the user to take it.
REACTION_S = 0.25
# Shorter suggestions are not worth a Tab.
MIN_ACCEPT_CHARS = 3
SEED = 7


@dataclass
class KeyRecord:
    index: int
    at_s: float
    kind: str  # "key", "enter" or "accept"
    latency_ms: float | None = None
    outcome: str = "pending"  # "shown", "empty", "cancelled", "error"
    shown: str | None = None


@dataclass
class Replay:
    records: list[KeyRecord] = field(default_factory=list)
    accepted_chars: int = 0
    typed_chars: int = 0
    client_cancels: int = 0


def fetch_source(work: Path) -> tuple[Path, Path]:
    """The workspace root (the unpacked sdist) and the module to type into."""
    root = fetch_sdist(SDIST, work)
    return root, root / MODULE


def utf16(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def position_of(text: str, offset: int) -> types.Position:
    head = text[:offset]
    line = head.count("\n")
    return types.Position(line=line, character=utf16(head[head.rfind("\n") + 1 :]))


def key_delay(rng: random.Random, ch: str) -> float:
    delay = rng.lognormvariate(math.log(KEY_MEDIAN_S), KEY_SIGMA)
    if ch == "\n":
        delay += ENTER_PAUSE_S
    if rng.random() < THINK_P:
        delay += rng.uniform(*THINK_S)
    return delay


async def replay(args: argparse.Namespace) -> dict[str, Any]:
    root, module = fetch_source(WORK)
    original = module.read_text(encoding="utf-8")
    start = original.index(START_AT)
    target = original[start : start + args.chars]
    target = target[: target.rfind("\n") + 1]  # whole lines
    prefix_text, suffix_text = original[:start], original[start + len(target) :]
    state = Path(tempfile.mkdtemp(prefix="infiller-replay-"))
    client = LanguageClient("infiller-replay", "0")

    @client.feature(types.WINDOW_WORK_DONE_PROGRESS_CREATE)
    def create(ls: Any, params: Any) -> None:
        return None

    for method in (
        types.PROGRESS,
        types.WINDOW_LOG_MESSAGE,
        types.WINDOW_SHOW_MESSAGE,
        types.TEXT_DOCUMENT_PUBLISH_DIAGNOSTICS,
    ):
        client.feature(method)(_ignore)

    env = {**os.environ, "INFILLER_STATE_DIR": str(state)}
    await client.start_io(
        sys.executable,
        "-m",
        "server",
        "serve",
        "--model",
        args.model,
        "--log-file",
        str(state / "server.log"),
        env=env,
        cwd=str(REPO),
    )
    # pygls's client pipes the server's stderr and never reads it: drain it so the server cannot block.
    stderr_task = asyncio.ensure_future(_drain(client, state / "server.stderr"))
    await client.initialize_async(
        types.InitializeParams(
            process_id=os.getpid(),
            root_uri=root.as_uri(),
            capabilities=types.ClientCapabilities(
                window=types.WindowClientCapabilities(work_done_progress=True),
                text_document=types.TextDocumentClientCapabilities(
                    inline_completion=types.InlineCompletionClientCapabilities()
                ),
            ),
            initialization_options={"infiller": {**json.loads(args.settings), "model": args.model}},
        )
    )
    client.initialized(types.InitializedParams())

    async def stats() -> dict[str, Any]:
        result = await client.workspace_execute_command_async(
            types.ExecuteCommandParams(command="infiller.stats")
        )
        return _plain(result)

    load_start = time.perf_counter()
    while (await stats())["model"] is None:
        await asyncio.sleep(0.2)
    while not (await stats())["index_ready"]:
        await asyncio.sleep(0.2)
    load_s = time.perf_counter() - load_start

    uri = module.as_uri()
    text = prefix_text + suffix_text
    cursor = len(prefix_text)
    version = 1
    client.text_document_did_open(
        types.DidOpenTextDocumentParams(
            text_document=types.TextDocumentItem(uri=uri, language_id="python", version=version, text=text)
        )
    )
    # The user puts the cursor where they will type and looks for a moment: the editor asks once
    # (cold prompt), and typing starts when the answer is in or `settle` seconds have passed.
    first_sent = time.perf_counter()
    first = client.text_document_inline_completion_async(
        types.InlineCompletionParams(
            text_document=types.TextDocumentIdentifier(uri=uri),
            position=position_of(text, cursor),
            context=types.InlineCompletionContext(trigger_kind=types.InlineCompletionTriggerKind.Invoked),
        )
    )
    try:
        await asyncio.wait_for(asyncio.shield(first), args.settle)
        first_ms: float | None = (time.perf_counter() - first_sent) * 1000
    except TimeoutError:
        first_ms = None

    rng = random.Random(SEED)
    result = Replay()
    pending: dict[str, asyncio.Future[Any]] = {}
    visible: dict[str, Any] = {"text": None, "at": 0.0, "version": -1}
    t0 = time.perf_counter()

    def edit(insert: str) -> None:
        nonlocal text, cursor, version
        pos = position_of(text, cursor)
        text = text[:cursor] + insert + text[cursor:]
        cursor += len(insert)
        version += 1
        visible["text"] = None
        client.text_document_did_change(
            types.DidChangeTextDocumentParams(
                text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=version),
                content_changes=[
                    types.TextDocumentContentChangePartial(range=types.Range(pos, pos), text=insert)
                ],
            )
        )

    async def request(record: KeyRecord, at_version: int) -> None:
        for msg_id, fut in list(pending.items()):
            if not fut.done():
                client.protocol.notify(types.CANCEL_REQUEST, types.CancelParams(id=msg_id))
                result.client_cancels += 1
        pending.clear()
        msg_id = f"key-{record.index}"
        params = types.InlineCompletionParams(
            text_document=types.TextDocumentIdentifier(uri=uri),
            position=position_of(text, cursor),
            context=types.InlineCompletionContext(trigger_kind=types.InlineCompletionTriggerKind.Automatic),
        )
        sent = time.perf_counter()
        fut = client.protocol.send_request_async(types.TEXT_DOCUMENT_INLINE_COMPLETION, params, msg_id=msg_id)
        pending[msg_id] = fut
        try:
            answer = await fut
        except Exception as exc:
            record.outcome = "cancelled" if "cancel" in str(exc).lower() else "error"
            return
        items = answer.items if isinstance(answer, types.InlineCompletionList) else (answer or [])
        if items and items[0].insert_text:
            record.latency_ms = (time.perf_counter() - sent) * 1000
            record.outcome = "shown"
            record.shown = str(items[0].insert_text)
            if version == at_version:
                visible.update(
                    text=record.shown,
                    at=time.perf_counter(),
                    version=at_version,
                    id=items[0].command.arguments if items[0].command else None,
                )
        else:
            record.outcome = "empty"

    tasks: list[asyncio.Task[None]] = []
    i = 0
    while i < len(target):
        ch = target[i]
        await asyncio.sleep(key_delay(rng, ch))
        remaining = target[i:]
        shown = visible["text"]
        kind = "key"
        if (
            shown
            and visible["version"] == version
            and time.perf_counter() - visible["at"] >= REACTION_S
            and len(shown) >= MIN_ACCEPT_CHARS
            and remaining.startswith(shown)
        ):
            insert, kind = shown, "accept"
            if visible.get("id"):
                await client.workspace_execute_command_async(
                    types.ExecuteCommandParams(command="infiller.accepted", arguments=list(visible["id"]))
                )
            result.accepted_chars += len(shown)
        elif ch == "\n":
            # Enter: the editor auto-indents to the next line's indentation.
            rest = target[i + 1 :]
            indent = rest[: len(rest) - len(rest.lstrip(" "))] if rest.strip() else ""
            insert, kind = "\n" + indent, "enter"
            result.typed_chars += 1
        else:
            insert = ch
            result.typed_chars += 1
        edit(insert)
        i += len(insert)
        record = KeyRecord(len(result.records), time.perf_counter() - t0, kind)
        result.records.append(record)
        tasks.append(asyncio.ensure_future(request(record, version)))
    await asyncio.sleep(2.0)
    for task in tasks:
        if not task.done():
            task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    assert text == original, "the replay must rebuild the original file"
    server_stats = await stats()
    await client.shutdown_async(None)
    client.exit(None)
    await client.stop()
    stderr_task.cancel()
    summary = summarize(args, result, server_stats, load_s, time.perf_counter() - t0, len(target))
    summary["first_request_ms"] = None if first_ms is None else round(first_ms, 1)
    summary["load_average"] = os.getloadavg()
    return summary


async def _drain(client: LanguageClient, path: Path) -> None:
    process = client._server
    if process is None or process.stderr is None:
        return
    with path.open("wb") as out:
        while chunk := await process.stderr.read(65536):
            out.write(chunk)


def _ignore(ls: Any, params: Any) -> None:
    """Notifications an editor would display; the replay has no use for them."""


def _plain(value: Any) -> Any:
    if hasattr(value, "_asdict"):
        return {k: _plain(v) for k, v in value._asdict().items()}
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def pct(samples: list[float], q: int) -> float | None:
    if not samples:
        return None
    if len(samples) == 1:
        return samples[0]
    return statistics.quantiles(samples, n=100, method="inclusive")[q - 1]


def summarize(
    args: argparse.Namespace,
    replay: Replay,
    server: dict[str, Any],
    load_s: float,
    duration_s: float,
    chars: int,
) -> dict[str, Any]:
    records = replay.records
    shown = [r.latency_ms for r in records if r.outcome == "shown" and r.latency_ms is not None]
    outcomes: dict[str, int] = {}
    for r in records:
        outcomes[r.outcome] = outcomes.get(r.outcome, 0) + 1
    return {
        "model": args.model,
        "settings": json.loads(args.settings),
        "file": f"{SDIST} {MODULE}, {chars} characters from `{START_AT}`",
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "model_load_and_index_s": round(load_s, 1),
        "duration_s": round(duration_s, 1),
        "keystrokes": len(records),
        "typed_chars": replay.typed_chars,
        "accepted_chars": replay.accepted_chars,
        "accepts": sum(1 for r in records if r.kind == "accept"),
        "outcomes": outcomes,
        "keystroke_to_suggestion_ms": {
            "p50": _round(pct(shown, 50)),
            "p95": _round(pct(shown, 95)),
            "count": len(shown),
        },
        "keystrokes_with_suggestion": round(len(shown) / len(records), 3) if records else None,
        "client_cancel_requests": replay.client_cancels,
        "server": {
            "requests": server["requests"],
            "cancelled": server["cancelled"],
            "cancel_rate": server["cancel_rate"],
            "cache_hit_rate": server["cache_hit_rate"],
            "served_by": server["served_by"],
            "model_latency_ms": server["model_latency_ms"],
            "no_suggestion": server["no_suggestion"],
            "accepted": server["accepted"],
            "typed_through": server["typed_through"],
        },
        "records": [asdict(r) for r in records] if args.keep_records else None,
    }


def _round(x: float | None) -> float | None:
    return None if x is None else round(x, 1)


def _settings_text(run: dict[str, Any]) -> str:
    return json.dumps(run["settings"]) if run.get("settings") else ""


def markdown(runs: list[dict[str, Any]]) -> str:
    lines = [
        "# Replay typing: keystroke to shown suggestion",
        "",
        "`.venv/bin/python -m bench.replay_typing --model MODEL`"
        " (the module docstring describes the typing model).",
        "",
        "| model | file | keystrokes | p50 ms | p95 ms | with suggestion | cache hit rate | cancel rate"
        " | served by | accepted chars |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in runs:
        k, s = r["keystroke_to_suggestion_ms"], r["server"]
        lines.append(
            f"| {r['model']} {_settings_text(r)} | {r['file']} | {r['keystrokes']} | "
            f"{k['p50']} | {k['p95']} | "
            f"{100 * (r['keystrokes_with_suggestion'] or 0):.0f}% | "
            f"{100 * (s['cache_hit_rate'] or 0):.0f}% | "
            f"{100 * (s['cancel_rate'] or 0):.0f}% | {s['served_by']} | "
            f"{r['accepted_chars']} of {r['accepted_chars'] + r['typed_chars']} |"
        )
    lines += ["", f"Machine: {runs[0]['machine']['cpus']} CPUs, {runs[0]['machine']['platform']}.", ""]
    for r in runs:
        load = ", ".join(f"{x:.1f}" for x in r["load_average"])
        lines.append(
            f"- {r['model']}: first (cold) request {r['first_request_ms']} ms; load average {load} "
            "(other processes share the CPUs)"
        )
    for r in runs:
        lines.append(
            f"- {r['model']}: no-suggestion reasons {r['server']['no_suggestion']}; "
            f"model-served latency {r['server']['model_latency_ms']}; outcomes {r['outcomes']}"
        )
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--model", action="append", help="registry model (repeatable); default qwen2.5-coder-0.5b"
    )
    parser.add_argument("--append", action="store_true", help="add to the runs already in the output")
    parser.add_argument("--settings", default="{}", help="extra server settings (JSON, camelCase)")
    parser.add_argument("--chars", type=int, default=TYPED_CHARS, help="characters to type")
    parser.add_argument(
        "--settle",
        type=float,
        default=60.0,
        help="longest wait for the first (cold) suggestion before typing starts",
    )
    parser.add_argument("--keep-records", action="store_true", help="store every keystroke in the JSON")
    parser.add_argument("--out", default=str(RESULTS / "replay_typing"), help="output path without extension")
    args = parser.parse_args()
    runs = []
    for model in args.model or ["qwen2.5-coder-0.5b"]:
        run_args = argparse.Namespace(**{**vars(args), "model": model})
        run = asyncio.run(replay(run_args))
        runs.append(run)
        k = run["keystroke_to_suggestion_ms"]
        print(
            f"{model}: p50 {k['p50']} ms, p95 {k['p95']} ms, "
            f"cache hit rate {run['server']['cache_hit_rate']}, "
            f"cancel rate {run['server']['cancel_rate']}",
            file=sys.stderr,
        )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if args.append and out.with_suffix(".json").is_file():
        runs = json.loads(out.with_suffix(".json").read_text()) + runs
    out.with_suffix(".json").write_text(json.dumps(runs, indent=2) + "\n")
    out.with_suffix(".md").write_text(markdown(runs))
    print(markdown(runs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
