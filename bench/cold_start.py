"""Cold start and a 9,000-line file: the two numbers the typing-loop issue asks for.

1. Cold start, per model: the real server over stdio (`python -m server serve`, pygls's
   LanguageClient, as the editors drive it) on a fresh copy of a pinned sdist (httpx 0.27.2), so
   that its index is built from scratch. The client opens a real file with the cursor in a function
   body (the rest of that line not typed yet), as an editor restoring a session does, and asks for
   an inline completion (Invoked) until one is not empty. The timeline, in seconds since the server
   process was started: initialize answered; model loaded and index ready (the `$/progress` bars'
   ends, cross-checked by polling `infiller.stats`: `model`, `index_ready`); the first suggestion
   shown; and, when it came early, the whole one (after `infiller/suggestionUpdated`).
2. A completion in Django 5.1's `tests/admin_views/tests.py` (9,000 lines; the sdist bench/index_bench.py
   fetches): prompt assembly in process (`Completer.build_prompt` over the index, the model's own
   tokenizer without its weights) at ~50 cursors spread over the file, for the full prompt and the
   cold one the server sends first (`grow=True`), against the target of 20 ms p95; then over stdio,
   one inline completion in the middle of the file (cold), and the next keystroke after typing the
   suggestion's first character.

The index lives in the user cache keyed by the workspace's path (not in INFILLER_STATE_DIR), so each
stdio run copies its workspace to a new temporary path and deletes that index afterwards.

    nice -n 19 .venv/bin/python -m bench.cold_start [--models M ...] [--threads N] [--out PATH]

Writes bench/results/cold_start.{json,md} with the machine, the commit and the load average before
and after each part. Server logs stay in bench/work/cold_start/.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import json
import logging
import os
import platform
import pstats
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lsprotocol import types
from pygls.lsp.client import LanguageClient

from bench.index_bench import DEFAULT_SPEC as DJANGO_SPEC
from bench.replay.lsp_driver import position_of
from bench.replay.procs import children_matching, cpu_seconds, machine, peak_rss_mb
from bench.replay_typing import measured_code
from bench.sdist import fetch_sdist
from context.anchor import function_body_start
from server.lsp.server import SUGGESTION_UPDATED, SUGGESTION_UPDATES
from server.model.runtime import model_threads

REPO = Path(__file__).resolve().parent.parent
WORK = REPO / "bench" / "work"
LOGS = WORK / "cold_start"
# The in-process part's index of the Django sdist; the stdio part starts the server with a copy.
PREPARED_DB = WORK / "cold-start-django.sqlite"
RESULTS = REPO / "bench" / "results"
DEFAULT_MODELS = ("qwen2.5-coder-0.5b", "qwen2.5-coder-1.5b")

# The cold start's workspace: a real, mid-sized package (60 Python files), and a file of it.
COLD_SPEC = "httpx==0.27.2"
COLD_FILE = "httpx/_models.py"
# The large file: Django's biggest, which bench/index_bench.py also types into.
BIG_FILE = "tests/admin_views/tests.py"
# Enough cursors for a p95 that is not the single slowest one, few enough for a short run.
PROMPT_CURSORS = 50
# Keys typed at each cursor for the typing part of prompt assembly (the rest of the line, at most).
KEYS_PER_CURSOR = 8
ASSEMBLY_TARGET_MS = 20.0
# How long the server gets to load, index and answer (the 1.5B on one busy core is slow).
ANSWER_TIMEOUT_S = 300.0
# After an empty answer (the model still loading), ask again this much later: an editor re-asks
# on the next keystroke; this is a fast typist's pace.
RETRY_S = 0.2
STATS_POLL_S = 0.1
# How long a suggestion shown early gets to grow into the whole one (suggestionUpdated).
UPDATE_WAIT_S = 20.0
# Functions kept from the profile of prompt assembly (where the time goes).
PROFILE_TOP = 12


# --- pure helpers ----------------------------------------------------------------------------


def percentile(values: Sequence[float], p: float) -> float:
    """The p-th percentile (0-100) by nearest rank on the sorted values; 0.0 for none."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))]


def summary_ms(values: Sequence[float]) -> dict[str, float]:
    return {
        "p50": round(percentile(values, 50), 2),
        "p95": round(percentile(values, 95), 2),
        "max": round(max(values, default=0.0), 2),
    }


# A statement line: indented code that starts with a name or keyword (not a bracket, string or comment).
STATEMENT = re.compile(r"^[ \t]+[A-Za-z_]")
DEF_OR_CLASS = re.compile(r"^[ \t]*(?:async[ \t]+)?(?:def|class)\b")


@dataclass(frozen=True)
class Cursor:
    """A cursor in a file: 0-based line and column; the rest of the line is not typed yet."""

    line: int
    column: int
    kind: str  # "mid-line" (after ` = ` or `(`) or "new-line" (the indentation of an empty line)
    rest: str  # what the original line had after the cursor


def _mid_column(line: str) -> int | None:
    """After ` = ` or the first `(` of a statement, when something follows it."""
    indent = len(line) - len(line.lstrip())
    for mark in (" = ", "("):
        at = line.find(mark, indent)
        if at >= 0 and line[at + len(mark) :].strip():
            return at + len(mark)
    return None


def _in_strings(lines: Sequence[str]) -> list[bool]:
    """Per line: does it start inside a triple-quoted string (a docstring's inner lines)?"""
    out, inside = [], False
    for line in lines:
        out.append(inside)
        if (line.count('"""') + line.count("'''")) % 2:
            inside = not inside
    return out


def _cursor_at(lines: Sequence[str], j: int, kind: str) -> Cursor | None:
    """A cursor of `kind` on line j if that line is a statement inside a function body."""
    text = lines[j]
    if not STATEMENT.match(text) or DEF_OR_CLASS.match(text):
        return None
    column = _mid_column(text) if kind == "mid-line" else len(text) - len(text.lstrip())
    if column is None:
        return None
    if function_body_start([*lines[:j], text[:column]]) is None:
        return None
    return Cursor(j, column, kind, text[column:])


def spread_cursors(
    lines: Sequence[str], count: int, kinds: Sequence[str] = ("mid-line", "new-line")
) -> list[Cursor]:
    """`count` cursors in function bodies, spread evenly over the file, their kinds alternating.

    The i-th cursor is on the suitable line nearest to the middle of the i-th of `count` equal
    slices of the file (a statement, not inside a docstring); a line is used once.
    """
    out: list[Cursor] = []
    used: set[int] = set()
    in_string = _in_strings(lines)
    n = len(lines)
    for i in range(count):
        target = int((i + 0.5) * n / count)
        kind = kinds[i % len(kinds)]
        for distance in range(n):
            found = None
            for j in (target - distance, target + distance):
                if 0 <= j < n and j not in used and not in_string[j]:
                    found = _cursor_at(lines, j, kind)
                    if found:
                        break
            if found:
                used.add(found.line)
                out.append(found)
                break
            if target - distance < 0 and target + distance >= n:
                break
    return out


def typed_text(lines: Sequence[str], cursor: Cursor) -> str:
    """The buffer while the user types the cursor's line: that line ends at the cursor."""
    return "\n".join([*lines[: cursor.line], lines[cursor.line][: cursor.column], *lines[cursor.line + 1 :]])


def progress_name(title: str | None, kind: str | None) -> str | None:
    """The timeline event of a `$/progress` value: index_begin/end, model_begin/end; None for others."""
    if not title or kind not in ("begin", "end"):
        return None
    if title == "infiller: indexing":
        return f"index_{kind}"
    if title.startswith("infiller: loading "):
        return f"model_{kind}"
    return None


def first_times(events: Sequence[tuple[float, str, str]]) -> dict[str, float]:
    """The time of each event's first occurrence."""
    out: dict[str, float] = {}
    for t, name, _ in events:
        out.setdefault(name, t)
    return out


def _field(value: Any, name: str) -> Any:
    return value.get(name) if isinstance(value, dict) else getattr(value, name, None)


def _plain(value: Any) -> Any:
    if hasattr(value, "_asdict"):
        return {k: _plain(v) for k, v in value._asdict().items()}
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


# --- the server over stdio -------------------------------------------------------------------


@dataclass
class Attempt:
    """One inline completion request: when it was sent and answered (s since start), and the answer."""

    trigger: str
    sent_s: float
    answered_s: float
    text: str | None

    @property
    def ms(self) -> float:
        return round((self.answered_s - self.sent_s) * 1000, 1)


@dataclass
class Probe:
    """One server process over stdio, with a clock: what arrived when, in seconds since it started."""

    model: str
    threads: int
    state: Path
    events: list[tuple[float, str, str]] = field(default_factory=list)
    attempts: list[Attempt] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.client = LanguageClient("infiller-cold-start", "0")
        self.t0 = 0.0
        self._titles: dict[str, str] = {}
        self.updated = asyncio.Event()
        self.uri = ""
        self.text = ""
        self.version = 1
        self._tasks: list[asyncio.Task[None]] = []

    def now(self) -> float:
        return round(time.perf_counter() - self.t0, 3)

    def mark(self, name: str, detail: str = "") -> None:
        self.events.append((self.now(), name, detail))

    def _progress(self, params: Any) -> None:
        token, value = str(_field(params, "token")), _field(params, "value")
        kind = _field(value, "kind")
        if kind == "begin":
            self._titles[token] = str(_field(value, "title"))
        name = progress_name(self._titles.get(token), kind)
        if name:
            self.mark(name, str(_field(value, "message") or ""))

    async def start(self, root: Path) -> None:
        client = self.client
        client.feature(types.WINDOW_WORK_DONE_PROGRESS_CREATE)(lambda ls, params: None)
        client.feature(types.PROGRESS)(lambda ls, params: self._progress(params))  # pygls tags the function
        client.feature(types.WINDOW_SHOW_MESSAGE)(
            lambda ls, p: self.mark("message", str(_field(p, "message")))
        )
        for method in (types.WINDOW_LOG_MESSAGE, types.TEXT_DOCUMENT_PUBLISH_DIAGNOSTICS):
            client.feature(method)(lambda ls, params: None)

        @client.feature(SUGGESTION_UPDATED)
        def updated(ls: Any, params: Any) -> None:
            self.mark("suggestion_updated")
            self.updated.set()

        self.state.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "INFILLER_STATE_DIR": str(self.state)}
        self.t0 = time.perf_counter()
        await client.start_io(
            sys.executable,
            "-m",
            "server",
            "serve",
            "--model",
            self.model,
            "--log-file",
            str(self.state / "server.log"),
            env=env,
            cwd=str(REPO),
        )
        self.mark("spawned")
        # pygls's client pipes the server's stderr and never reads it: drain it so the server cannot block.
        self._tasks.append(asyncio.ensure_future(self._drain(self.state / "server.stderr")))
        await client.initialize_async(
            types.InitializeParams(
                process_id=os.getpid(),
                root_uri=root.as_uri(),
                capabilities=types.ClientCapabilities(
                    experimental={SUGGESTION_UPDATES: True},
                    window=types.WindowClientCapabilities(work_done_progress=True),
                    text_document=types.TextDocumentClientCapabilities(
                        inline_completion=types.InlineCompletionClientCapabilities()
                    ),
                ),
                initialization_options={"infiller": {"model": self.model, "threads": self.threads}},
            )
        )
        self.mark("initialize_answered")
        client.initialized(types.InitializedParams())
        self._tasks.append(asyncio.ensure_future(self._poll_stats()))

    async def stats(self) -> dict[str, Any]:
        result = await self.client.workspace_execute_command_async(
            types.ExecuteCommandParams(command="infiller.stats")
        )
        return dict(_plain(result))

    async def _poll_stats(self) -> None:
        """When `infiller.stats` first says the model is loaded and the index ready."""
        seen: set[str] = set()
        while len(seen) < 2:
            stats = await self.stats()
            for name, ok in (
                ("stats_model", stats.get("model") is not None),
                ("stats_index", stats["index_ready"]),
            ):
                if ok and name not in seen:
                    seen.add(name)
                    self.mark(name)
            await asyncio.sleep(STATS_POLL_S)

    async def ready(self, timeout: float) -> None:
        deadline = time.perf_counter() + timeout
        while not {"stats_model", "stats_index"} <= set(first_times(self.events)):
            if time.perf_counter() > deadline:
                raise TimeoutError(f"{self.model}: model and index not ready in {timeout:.0f} s")
            await asyncio.sleep(STATS_POLL_S)

    def open(self, path: Path, text: str) -> None:
        self.uri, self.text = path.as_uri(), text
        self.client.text_document_did_open(
            types.DidOpenTextDocumentParams(
                text_document=types.TextDocumentItem(uri=self.uri, language_id="python", version=1, text=text)
            )
        )
        self.mark("opened")

    def type(self, offset: int, key: str) -> None:
        """One key typed at `offset` of the buffer."""
        pos = position_of(self.text, offset)
        self.text = self.text[:offset] + key + self.text[offset:]
        self.version += 1
        self.client.text_document_did_change(
            types.DidChangeTextDocumentParams(
                text_document=types.VersionedTextDocumentIdentifier(uri=self.uri, version=self.version),
                content_changes=[
                    types.TextDocumentContentChangePartial(range=types.Range(pos, pos), text=key)
                ],
            )
        )

    async def inline(self, offset: int, trigger: types.InlineCompletionTriggerKind) -> Attempt:
        sent = self.now()
        result = await asyncio.wait_for(
            self.client.text_document_inline_completion_async(
                types.InlineCompletionParams(
                    text_document=types.TextDocumentIdentifier(uri=self.uri),
                    position=position_of(self.text, offset),
                    context=types.InlineCompletionContext(trigger_kind=trigger),
                )
            ),
            ANSWER_TIMEOUT_S,
        )
        items = result.items if isinstance(result, types.InlineCompletionList) else (result or [])
        text = str(items[0].insert_text) if items and items[0].insert_text else None
        attempt = Attempt(trigger.name, sent, self.now(), text)
        self.attempts.append(attempt)
        return attempt

    async def until_suggestion(self, offset: int, timeout: float) -> Attempt:
        """Ask (Invoked) until a suggestion is not empty, RETRY_S apart."""
        deadline = time.perf_counter() + timeout
        while True:
            self.updated.clear()
            attempt = await self.inline(offset, types.InlineCompletionTriggerKind.Invoked)
            if attempt.text:
                return attempt
            if time.perf_counter() > deadline:
                raise TimeoutError(f"{self.model}: no suggestion in {timeout:.0f} s")
            await asyncio.sleep(RETRY_S)

    async def whole(self, offset: int, first: Attempt) -> Attempt:
        """The suggestion once it stops growing: ask again on each suggestionUpdated, as clients do."""
        last = first
        deadline = time.perf_counter() + UPDATE_WAIT_S
        while (left := deadline - time.perf_counter()) > 0:
            try:
                await asyncio.wait_for(self.updated.wait(), left)
            except TimeoutError:
                break
            self.updated.clear()
            attempt = await self.inline(offset, types.InlineCompletionTriggerKind.Automatic)
            last = attempt if attempt.text else last
        return last

    def pids(self) -> dict[str, int]:
        process = self.client._server
        if process is None:
            return {}
        pids = {"server": process.pid}
        model = children_matching(process.pid, "server.model.process")
        if model:
            pids["model"] = model[0]
        return pids

    def cpu(self) -> dict[str, float | None]:
        """CPU seconds the server and the model process have used so far (robust to a busy machine)."""
        return {k: cpu_seconds(p) for k, p in self.pids().items()}

    async def stop(self) -> dict[str, Any]:
        stats = await self.stats()
        rss = {k: peak_rss_mb(p) for k, p in self.pids().items()}
        await self.client.shutdown_async(None)
        self.client.exit(None)
        await self.client.stop()
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        return {
            "peak_rss_mib": rss,
            "served_by": stats.get("served_by"),
            "no_suggestion": stats.get("no_suggestion"),
            "log": str(self.state.relative_to(REPO) / "server.log"),
        }

    async def _drain(self, path: Path) -> None:
        process = self.client._server
        if process is None or process.stderr is None:
            return
        with path.open("wb") as out:
            while chunk := await process.stderr.read(65536):
                out.write(chunk)


@contextlib.contextmanager
def fresh_copy(tree: Path) -> Iterator[Path]:
    """A copy of `tree` at a new path, so that the server builds a new index; removed afterwards
    with that index (the index lives in the user cache, keyed by the workspace's path)."""
    from context.index import default_db_path

    parent = Path(tempfile.mkdtemp(prefix="infiller-cold-start-"))
    root = parent / tree.name
    shutil.copytree(tree, root)
    db = default_db_path(root)
    try:
        yield root
    finally:
        shutil.rmtree(parent, ignore_errors=True)
        _remove_db(db)


@contextlib.contextmanager
def seeded_index(tree: Path, prepared: Path) -> Iterator[Path]:
    """`tree` with the server's index already built (a copy of `prepared`, the in-process part's
    database of the same files), as after an earlier session; that copy is removed afterwards."""
    from context.index import default_db_path

    db = default_db_path(tree)
    _remove_db(db)
    db.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(prepared, db)
    try:
        yield tree
    finally:
        _remove_db(db)


def _remove_db(db: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)


def _timeline(probe: Probe) -> dict[str, Any]:
    times = first_times(probe.events)
    details = {name: detail for _, name, detail in reversed(probe.events) if detail}
    return {
        "initialize_answered_s": times.get("initialize_answered"),
        "model_loaded_s": times.get("model_end"),
        "model_loaded_stats_s": times.get("stats_model"),
        "index_ready_s": times.get("index_end"),
        "index_ready_stats_s": times.get("stats_index"),
        "index_message": details.get("index_end"),
        "model_message": details.get("model_end"),
        "messages": [d for _, n, d in probe.events if n == "message"],
    }


def _state(kind: str, model: str) -> Path:
    state = LOGS / f"{kind}-{model}"
    shutil.rmtree(state, ignore_errors=True)
    return state


async def cold_start(model: str, threads: int, tree: Path) -> dict[str, Any]:
    """Server start → first suggestion, on a fresh copy of `tree` (no index yet)."""
    lines = (tree / COLD_FILE).read_text().split("\n")
    cursor = spread_cursors(lines, 1)[0]
    load_before = os.getloadavg()
    with fresh_copy(tree) as root:
        probe = Probe(model, threads, _state("cold", model))
        await probe.start(root)
        text = typed_text(lines, cursor)
        probe.open(root / COLD_FILE, text)
        offset = len(typed_text(lines[: cursor.line + 1], cursor))
        first = await probe.until_suggestion(offset, ANSWER_TIMEOUT_S)
        first_cpu = probe.cpu()
        whole = await probe.whole(offset, first)
        await probe.ready(ANSWER_TIMEOUT_S)  # the timeline ends with the index too
        end = await probe.stop()
    return {
        "model": model,
        "file": COLD_FILE,
        "cursor": {"line": cursor.line + 1, "column": cursor.column + 1, "rest_of_line": cursor.rest},
        **_timeline(probe),
        "first_suggestion_s": first.answered_s,
        "first_suggestion": first.text,
        "first_request_ms": first.ms,
        "requests_until_first": len([a for a in probe.attempts if a.answered_s <= first.answered_s]),
        "cpu_s_until_first": first_cpu,
        "whole_suggestion_s": whole.answered_s if whole is not first else None,
        "whole_suggestion": whole.text,
        "attempts": [vars(a) for a in probe.attempts],
        "events": probe.events,
        "load_average": {"before": load_before, "after": os.getloadavg()},
        **end,
    }


async def big_file_stdio(model: str, threads: int, tree: Path, prepared: Path) -> dict[str, Any]:
    """One inline completion in the middle of the 9,000-line file (cold), then the next keystroke."""
    lines = (tree / BIG_FILE).read_text().split("\n")
    cursor = spread_cursors(lines, 1)[0]
    load_before = os.getloadavg()
    with seeded_index(tree, prepared) as root:
        probe = Probe(model, threads, _state("big", model))
        await probe.start(root)
        # Opened before the model is loaded, so that nothing is prefilled at the file's head.
        probe.open(root / BIG_FILE, typed_text(lines, cursor))
        await probe.ready(ANSWER_TIMEOUT_S)
        probe.mark("ready")
        offset = len(typed_text(lines[: cursor.line + 1], cursor))
        cpu_before = probe.cpu()
        first = await probe.until_suggestion(offset, ANSWER_TIMEOUT_S)
        cpu_after = probe.cpu()
        ready_s = first_times(probe.events)["ready"]
        cold = [a for a in probe.attempts if a.sent_s >= ready_s]
        whole = await probe.whole(offset, first)
        shown = whole.text or ""
        probe.type(offset, shown[0])
        typed = await probe.inline(offset + 1, types.InlineCompletionTriggerKind.Automatic)
        end = await probe.stop()
    return {
        "model": model,
        "file": BIG_FILE,
        "lines": len(lines),
        "cursor": {"line": cursor.line + 1, "column": cursor.column + 1, "rest_of_line": cursor.rest},
        **_timeline(probe),
        "ready_s": ready_s,
        "cold_requests": len(cold),
        "cold_first_answer_ms": round((first.answered_s - cold[0].sent_s) * 1000, 1),
        "cold_cpu_s": {k: _spent(cpu_before.get(k), v) for k, v in cpu_after.items()},
        "cold_suggestion": first.text,
        "whole_suggestion_ms": round((whole.answered_s - cold[0].sent_s) * 1000, 1)
        if whole is not first
        else None,
        "whole_suggestion": whole.text,
        "typed_key": shown[0],
        "next_keystroke_ms": typed.ms,
        "next_keystroke_suggestion": typed.text,
        "next_keystroke_typed_through": typed.text == shown[1:],
        "attempts": [vars(a) for a in probe.attempts],
        "events": probe.events,
        "load_average": {"before": load_before, "after": os.getloadavg()},
        **end,
    }


def _spent(before: float | None, after: float | None) -> float | None:
    return None if before is None or after is None else round(after - before, 2)


# --- prompt assembly in process --------------------------------------------------------------


# What is timed per prompt. `Prompt.retrieval_ms` / `assembly_ms` as build_prompt reports them
# (its retrieval_ms runs from the call's start, so it also holds the completion plan and the
# middle's start, computed before retrieval); then split at the `retrieve` call itself: the
# retrieval, and the rest (assembly). Wall clock, and this thread's CPU time: what the same work
# costs on an idle machine (under nice 19 on shared cores the wall clock counts the wait for a CPU).
TIMED = (
    "prompt_retrieval_ms",
    "prompt_assembly_ms",
    "retrieval_ms",
    "assembly_ms",
    "total_ms",
    "retrieval_cpu_ms",
    "assembly_cpu_ms",
    "total_cpu_ms",
)


def _where(key: tuple[str, int, str]) -> str:
    """A profiler entry's function as `file.py:line(name)` (built-ins as they are)."""
    file, line, name = key
    return name if file == "~" else f"{Path(file).name}:{line}({name})"


class _Timed:
    """Wraps `Completer.retrieve`: the wall and CPU time of its last call, to split a prompt's."""

    def __init__(self, fn: Any) -> None:
        self.fn = fn
        self.ms = 0.0
        self.cpu_ms = 0.0

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        start, start_cpu = time.perf_counter(), time.thread_time()
        try:
            return self.fn(*args, **kwargs)
        finally:
            self.ms = (time.perf_counter() - start) * 1000
            self.cpu_ms = (time.thread_time() - start_cpu) * 1000


class VocabBackend:
    """A Backend with the model's tokenizer and template but no weights: prompts, no generation."""

    def __init__(self, model: str) -> None:
        from server.model.llamacpp import LlamaVocab
        from server.model.registry import ModelSpec, load_registry, resolve
        from server.model.runtime import DEFAULT_N_CTX

        spec = load_registry().get(model)
        self.spec: ModelSpec | None = spec
        self._vocab = LlamaVocab(resolve(spec), spec.family)
        self._n_ctx = min(DEFAULT_N_CTX, spec.context_length)

    @property
    def name(self) -> str:
        return self.spec.name if self.spec else self._vocab.name

    @property
    def template(self) -> Any:
        return self._vocab.template

    @property
    def n_ctx(self) -> int:
        return self._n_ctx

    def tokenize(self, text: str) -> list[int]:
        return self._vocab.tokenize(text)

    def count_tokens(self, text: str) -> int:
        return len(self._vocab.tokenize(text)) if text else 0

    def reset(self) -> None:
        pass

    def prefill(self, tokens: Sequence[int], cancel: Any = None) -> Any:
        raise NotImplementedError("a vocabulary has no weights")

    def generate(self, prompt: Sequence[int], **kwargs: Any) -> Any:
        raise NotImplementedError("a vocabulary has no weights")


def prompt_assembly(model: str, tree: Path, index: Any, count: int, *, profile: bool) -> dict[str, Any]:
    """build_prompt at `count` cursors of the big file: retrieval and assembly ms, full and cold."""
    from server.completion import Completer
    from server.request import CompletionContext
    from server.settings import Settings

    path = tree / BIG_FILE
    lines = path.read_text().split("\n")
    cursors = spread_cursors(lines, count)
    backend = VocabBackend(model)
    requests = [
        (c, CompletionContext.at(path, typed_text(lines, c), c.line, c.column, language="python", root=tree))
        for c in cursors
    ]
    load_before = os.getloadavg()
    modes: dict[str, Any] = {}
    for mode, grow in (("full", False), ("cold (grow=True)", True)):
        # A fresh Completer per mode, as the server has after loading: its first request pays for
        # counting the file's blocks, which later ones reuse.
        completer = Completer(backend, root=tree, index=index, settings=Settings().completion_settings())
        timed = _Timed(completer.retrieve)
        completer.retrieve = timed  # type: ignore[method-assign]
        rows = []
        for cursor, request in requests:
            start, start_cpu = time.perf_counter(), time.thread_time()
            prompt = completer.build_prompt(request, grow=grow)
            total = (time.perf_counter() - start) * 1000
            cpu = (time.thread_time() - start_cpu) * 1000
            rows.append(
                {
                    "line": cursor.line + 1,
                    "kind": cursor.kind,
                    "prompt_retrieval_ms": round(prompt.retrieval_ms, 2),
                    "prompt_assembly_ms": round(prompt.assembly_ms, 2),
                    "retrieval_ms": round(timed.ms, 2),
                    "assembly_ms": round(total - timed.ms, 2),
                    "total_ms": round(total, 2),
                    "retrieval_cpu_ms": round(timed.cpu_ms, 2),
                    "assembly_cpu_ms": round(cpu - timed.cpu_ms, 2),
                    "total_cpu_ms": round(cpu, 2),
                    "prompt_tokens": len(prompt.tokens),
                    "chunks": len(prompt.chunks),
                }
            )

        def column(key: str, kind: str | None = None, rows: list[dict[str, Any]] = rows) -> list[float]:
            return [float(r[key]) for r in rows if kind is None or r["kind"] == kind]

        modes[mode] = {
            **{key: summary_ms(column(key)) for key in TIMED},
            "first_request_ms": rows[0]["total_ms"],
            "first_request_cpu_ms": rows[0]["total_cpu_ms"],
            "prompt_tokens_p50": percentile(column("prompt_tokens"), 50),
            "by_kind": {
                kind: {
                    "cursors": len(column("total_ms", kind)),
                    **{key: summary_ms(column(key, kind)) for key in TIMED},
                }
                for kind in ("mid-line", "new-line")
            },
            "target_met": {
                key: percentile(column(key), 95) <= ASSEMBLY_TARGET_MS
                for key in ("assembly_ms", "assembly_cpu_ms", "total_ms", "total_cpu_ms")
            },
            "rows": rows,
        }
    # Typing: at every cursor the rest of its line typed key by key (KEYS_PER_CURSOR keys), one
    # cold-growing prompt per key as the server builds it; the first key of each place is left out
    # (that is the new place's cost, measured above).
    completer = Completer(backend, root=tree, index=index, settings=Settings().completion_settings())
    keystrokes: list[float] = []
    keystrokes_cpu: list[float] = []
    for cursor, _ in requests:
        typed = typed_text(lines, cursor)
        offset = sum(len(x) + 1 for x in lines[: cursor.line]) + cursor.column
        for k in range(min(KEYS_PER_CURSOR, len(cursor.rest)) + 1):
            text = typed[:offset] + cursor.rest[:k] + typed[offset:]
            request = CompletionContext.at(
                path, text, cursor.line, cursor.column + k, language="python", root=tree
            )
            start, start_cpu = time.perf_counter(), time.thread_time()
            completer.build_prompt(request, grow=True)
            if k:
                keystrokes.append((time.perf_counter() - start) * 1000)
                keystrokes_cpu.append((time.thread_time() - start_cpu) * 1000)
    modes["typing (each key after the first at a place)"] = {
        "keys": len(keystrokes),
        "total_ms": summary_ms(keystrokes),
        "total_cpu_ms": summary_ms(keystrokes_cpu),
        "target_met": {
            "total_ms": percentile(keystrokes, 95) <= ASSEMBLY_TARGET_MS,
            "total_cpu_ms": percentile(keystrokes_cpu, 95) <= ASSEMBLY_TARGET_MS,
        },
    }
    # Where the time goes: the same requests once more, both modes, under the profiler.
    hot_spots: list[dict[str, Any]] = []
    if profile:
        completer = Completer(backend, root=tree, index=index, settings=Settings().completion_settings())
        profiler = cProfile.Profile()
        profiler.enable()
        for _, request in requests:
            completer.build_prompt(request)
            completer.build_prompt(request, grow=True)
        profiler.disable()
        prompts = 2 * len(requests)
        hot_spots = [
            {
                "function": _where(key),
                "calls": calls,
                "own_ms_per_prompt": round(own * 1000 / prompts, 2),
                "cumulative_ms_per_prompt": round(cum * 1000 / prompts, 2),
                "mostly_from": _where(max(callers.items(), key=lambda kv: kv[1][3])[0]) if callers else None,
            }
            for key, (_, calls, own, cum, callers) in sorted(
                pstats.Stats(profiler).stats.items(),  # type: ignore[attr-defined]
                key=lambda kv: kv[1][2],  # by own time: the hot spots themselves
                reverse=True,
            )[:PROFILE_TOP]
        ]
    return {
        "model": model,
        "layout": "function body after the FIM middle marker" if completer._middle_layout else "classic FIM",
        "file": BIG_FILE,
        "lines": len(lines),
        "cursors": len(cursors),
        "modes": modes,
        "profile": hot_spots,
        "load_average": {"before": load_before, "after": os.getloadavg()},
    }


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def open_index(tree: Path) -> tuple[Any, dict[str, Any]]:
    """The Django index for the in-process part (kept in bench/work: built once, refreshed after)."""
    from context.index import Index

    existed = PREPARED_DB.exists()
    collect = _Collect()
    logging.getLogger("context").addHandler(collect)
    start, start_cpu = time.perf_counter(), time.process_time()
    try:
        index = Index.open(tree, PREPARED_DB)
        stats = index.refresh(None)
    finally:
        logging.getLogger("context").removeHandler(collect)
    return index, {
        "db_existed": existed,
        "refresh_s": round(time.perf_counter() - start, 2),
        "refresh_cpu_s": round(time.process_time() - start_cpu, 2),
        "files": len(index.files()),
        "parsed": stats.parsed,
        "warnings": collect.messages,
    }


# --- report ----------------------------------------------------------------------------------


def _s(x: float | None) -> str:
    return "—" if x is None else f"{x:.1f} s"


def _load(la: dict[str, Sequence[float]]) -> str:
    return f"{', '.join(f'{x:.2f}' for x in la['before'])} → {', '.join(f'{x:.2f}' for x in la['after'])}"


def _cpu(cpu: dict[str, float | None]) -> str:
    return " / ".join("—" if cpu.get(k) is None else f"{cpu[k]:.1f} s" for k in ("server", "model"))


def _p(wall: dict[str, float], cpu: dict[str, float] | None = None) -> str:
    """p50 / p95 in ms, with the CPU time's in brackets."""
    out = f"{wall['p50']:.1f} / {wall['p95']:.1f}"
    return out + (f" ({cpu['p50']:.1f} / {cpu['p95']:.1f})" if cpu else "")


def _met(ok: bool) -> str:
    return "met" if ok else "**not met**"


def _code(text: str | None) -> str:
    return "—" if text is None else "`" + text.replace("\n", "⏎").replace("`", "'").replace("|", "\\|") + "`"


def markdown(report: dict[str, Any]) -> str:
    m, code = report["machine"], report["measured"]
    dirty = f" plus uncommitted changes (diff {code['server_diff_sha1']})" if code["server_dirty"] else ""
    lines = [
        "# Cold start and a 9,000-line file",
        "",
        f"`{report['command']}`",
        "",
        f"Machine: {m.get('cpu')}, {m.get('cpus')} CPUs, {m.get('memory_gib')} GiB, {m.get('platform')};"
        " the CPUs are shared with other work (load averages below)."
        f" Commit {code['commit'][:12]}; server/ and context/ at {code['server_commit'][:12]}{dirty}."
        f" {report['threads']} model thread(s).",
    ]
    lines += _cold_section(report)
    lines += _assembly_section(report)
    lines += _big_section(report)
    return "\n".join(lines) + "\n"


def _cold_section(report: dict[str, Any]) -> list[str]:
    cold = report["cold_start"]
    if not cold:
        return []
    first = cold[0]
    where = first["cursor"]
    lines = [
        "",
        f"## Cold start: server start → first suggestion ({report['cold_spec']}, fresh index)",
        "",
        "A fresh index: the workspace is copied to a new path for each run, since the index lives in"
        " the user cache keyed by the workspace's path (INFILLER_STATE_DIR, also fresh, holds the"
        " statistics and the log).",
        "",
        f"The server process starts, the client initializes on a fresh copy of {report['cold_spec']}"
        f" and opens `{first['file']}` with the cursor at line {where['line']}, column {where['column']}"
        f" (in a function body; the rest of the line, {_code(where['rest_of_line'])}, not typed),"
        f" then asks (Invoked) every {RETRY_S} s until a suggestion is not empty. Seconds since the"
        " process was started. Model loaded and index ready: the end of the server's `$/progress`"
        " bar (`infiller.stats`, polled every 0.1 s, said so at the time in brackets).",
        "",
        "| model | initialize answered | model loaded | index ready | first suggestion | (its request)"
        " | whole suggestion | requests | CPU until first: server / model | suggestion shown first | whole"
        " | load average |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in cold:
        model = f"{_s(r['model_loaded_s'])} ({_s(r['model_loaded_stats_s'])})"
        index = f"{_s(r['index_ready_s'])} ({_s(r['index_ready_stats_s'])})"
        lines.append(
            f"| {r['model']} | {_s(r['initialize_answered_s'])} | {model} | {index}"
            f" | **{_s(r['first_suggestion_s'])}** | {r['first_request_ms']:.0f} ms"
            f" | {_s(r['whole_suggestion_s'])} | {r['requests_until_first']} | {_cpu(r['cpu_s_until_first'])}"
            f" | {_code(r['first_suggestion'])} | {_code(r['whole_suggestion'])}"
            f" | {_load(r['load_average'])} |"
        )
    lines.append("")
    for r in cold:
        messages = f"; messages {r['messages']}" if r["messages"] else ""
        lines.append(
            f"- {r['model']}: {r['index_message']}; {r['model_message']}; peak RSS {r['peak_rss_mib']} MiB;"
            f" served by {r['served_by']}; log `{r['log']}`{messages}"
        )
    return lines


def _assembly_section(report: dict[str, Any]) -> list[str]:
    prompts = report["prompt_assembly"]
    if not prompts:
        return []
    p0 = prompts[0]
    idx = report["django_index"]
    how = "refreshed" if idx["db_existed"] else "built"
    lines = [
        "",
        f"## Prompt assembly in a {p0['lines']:,}-line file (in process)",
        "",
        f"{report['django_spec']} `{p0['file']}`, {p0['cursors']} cursors spread over the file,"
        " alternately mid-line (after ` = ` or `(`) and at the start of a new line, each in a function"
        " body with the rest of its line not typed. `Completer.build_prompt` over the index (its"
        f" {idx['files']} files; {how} in {idx['refresh_s']} s, {idx['refresh_cpu_s']} s CPU in this"
        f" process; {len(idx['warnings'])} warnings while indexing) with the model's tokenizer (no weights)"
        " and the server's default settings: *full*, the whole budgets; *cold*, the prompt a new place"
        " gets first (`grow=True`), what the server builds for every request. `Prompt.retrieval_ms` and"
        " `assembly_ms` as build_prompt reports them (its retrieval_ms runs from the call's start, so it"
        " also holds the completion plan and the middle's start); then the same call split at"
        " `Completer.retrieve` itself: retrieve() and the rest (the prompt's assembly). In brackets,"
        " this thread's CPU time: what the same work costs on an idle machine (the wall clock, taken"
        f" under nice 19 on shared cores, also counts the wait for a CPU). Target: ≤ {ASSEMBLY_TARGET_MS:.0f}"
        " ms p95.",
        "",
        "| model | prompt | Prompt.retrieval_ms p50 / p95 | Prompt.assembly_ms p50 / p95"
        " | retrieve() p50 / p95 (CPU) | the rest p50 / p95 (CPU) | whole build_prompt p50 / p95 (CPU)"
        " | first request (CPU)"
        " | prompt tokens p50 | assembly ≤ 20 ms p95: wall (CPU) | whole ≤ 20 ms p95 |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for p in prompts:
        for mode, s in p["modes"].items():
            if "keys" in s:
                continue  # the typing row follows the table
            met = s["target_met"]
            retrieval, rest = (
                _p(s["retrieval_ms"], s["retrieval_cpu_ms"]),
                _p(s["assembly_ms"], s["assembly_cpu_ms"]),
            )
            lines.append(
                f"| {p['model']} | {mode} | {_p(s['prompt_retrieval_ms'])} | {_p(s['prompt_assembly_ms'])}"
                f" | {retrieval} | {rest} | {_p(s['total_ms'], s['total_cpu_ms'])}"
                f" | {s['first_request_ms']:.0f} ms ({s['first_request_cpu_ms']:.0f} ms)"
                f" | {s['prompt_tokens_p50']:.0f}"
                f" | {_met(met['assembly_ms'])} ({_met(met['assembly_cpu_ms'])})"
                f" | {_met(met['total_ms'])} ({_met(met['total_cpu_ms'])}) |"
            )
    lines += [
        "",
        f"Typing: at each cursor the rest of its line typed key by key (up to {KEYS_PER_CURSOR} keys),"
        " one prompt per key as the server builds it (cold and growing); the first key at a place is"
        " the new place's cost above and is left out. Whole build_prompt, wall p50 / p95 (CPU):",
        "",
    ]
    for p in prompts:
        for s in p["modes"].values():
            if "keys" in s:
                met = s["target_met"]
                lines.append(
                    f"- {p['model']}: {s['keys']} keys, {_p(s['total_ms'], s['total_cpu_ms'])};"
                    f" ≤ {ASSEMBLY_TARGET_MS:.0f} ms p95:"
                    f" {_met(met['total_ms'])} ({_met(met['total_cpu_ms'])})"
                )
    lines += ["", "Layout: " + "; ".join(f"{p['model']}, {p['layout']}" for p in prompts) + "."]
    lines += ["", "By cursor kind, wall p50 / p95 (CPU p50 / p95) in ms:", ""]
    for p in prompts:
        for mode, s in p["modes"].items():
            if "keys" in s:
                continue
            kinds = "; ".join(
                f"{k} ({v['cursors']}): retrieve() {_p(v['retrieval_ms'], v['retrieval_cpu_ms'])},"
                f" the rest {_p(v['assembly_ms'], v['assembly_cpu_ms'])}"
                for k, v in s["by_kind"].items()
            )
            lines.append(f"- {p['model']}, {mode}: {kinds}")
    lines += [
        "",
        f"Where the time goes ({p0['model']}, both prompts at every cursor once more under cProfile,"
        " which slows Python code down; the functions that spend the most time themselves, ms per"
        " prompt):",
        "",
        "| function | calls | own ms / prompt | cumulative ms / prompt | mostly called from |",
        "| --- | --- | --- | --- | --- |",
    ]
    for e in p0["profile"]:
        lines.append(
            f"| `{e['function']}` | {e['calls']} | {e['own_ms_per_prompt']} | {e['cumulative_ms_per_prompt']}"
            f" | `{e['mostly_from']}` |"
        )
    lines.append("")
    lines += [f"- {p['model']}: load average {_load(p['load_average'])}" for p in prompts]
    return lines


def _big_section(report: dict[str, Any]) -> list[str]:
    big = report["big_file"]
    if not big:
        return []
    b0 = big[0]
    where = b0["cursor"]
    lines = [
        "",
        "## One completion in that file over stdio",
        "",
        f"The server on a fresh copy of {report['django_spec']}; `{b0['file']}` opened right after"
        f" initialize with the cursor at line {where['line']}, column {where['column']} (the rest of"
        f" the line, {_code(where['rest_of_line'])}, not typed). Once the model is loaded and the"
        " index ready, one Invoked request there (*cold*: nothing of this place in the model's cache;"
        " asked again until a suggestion is not empty), then the suggestion's first character typed"
        " and an Automatic request (*next keystroke*). Round trips as the client sees them.",
        "",
        "| model | ready (model + index) | cold → first suggestion | its CPU: server / model"
        " | whole suggestion | next keystroke | typed through | first suggestion | whole | load average |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in big:
        ready = f"{_s(r['ready_s'])} (model {_s(r['model_loaded_s'])}, index {_s(r['index_ready_s'])})"
        whole = "—" if r["whole_suggestion_ms"] is None else f"{r['whole_suggestion_ms']:.0f} ms"
        through = "yes" if r["next_keystroke_typed_through"] else "no"
        lines.append(
            f"| {r['model']} | {ready} | **{r['cold_first_answer_ms']:.0f} ms**"
            f" ({r['cold_requests']} request(s)) | {_cpu(r['cold_cpu_s'])} | {whole}"
            f" | **{r['next_keystroke_ms']:.0f} ms**"
            f" | {through} | {_code(r['cold_suggestion'])} | {_code(r['whole_suggestion'])}"
            f" | {_load(r['load_average'])} |"
        )
    lines.append("")
    for r in big:
        messages = f"; messages {r['messages']}" if r["messages"] else ""
        lines.append(
            f"- {r['model']}: {r['index_message']}; served by {r['served_by']};"
            f" peak RSS {r['peak_rss_mib']} MiB; log `{r['log']}`{messages}"
        )
    return lines


def write(report: dict[str, Any], out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    out.with_suffix(".md").write_text(markdown(report))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=list(DEFAULT_MODELS))
    parser.add_argument("--threads", type=int, default=model_threads(), help="model threads (server default)")
    parser.add_argument("--cursors", type=int, default=PROMPT_CURSORS, help="prompt assembly cursors")
    parser.add_argument(
        "--parts", default="cold,assembly,big", help="which parts: cold, assembly, big (comma-separated)"
    )
    parser.add_argument("--out", default=str(RESULTS / "cold_start"), help="output path without extension")
    args = parser.parse_args(argv)
    parts = set(args.parts.split(","))
    django = fetch_sdist(DJANGO_SPEC, WORK).resolve()
    httpx = fetch_sdist(COLD_SPEC, WORK).resolve()
    report: dict[str, Any] = {
        "command": " ".join(["python -m bench.cold_start", *(sys.argv[1:] if argv is None else argv)]),
        "machine": {**machine(), "platform": platform.platform()},
        "measured": measured_code(),
        "threads": args.threads,
        "cold_spec": COLD_SPEC,
        "django_spec": DJANGO_SPEC,
        "cold_start": [],
        "django_index": None,
        "prompt_assembly": [],
        "big_file": [],
    }
    out = Path(args.out)
    if parts & {"assembly", "big"}:
        # Built once (minutes on a busy machine), then only refreshed; the stdio part's server
        # starts with a copy of it.
        print("opening the Django index...", file=sys.stderr)
        index, report["django_index"] = open_index(django)
        try:
            for model in args.models if "assembly" in parts else ():
                print(f"prompt assembly: {model}...", file=sys.stderr)
                report["prompt_assembly"].append(
                    prompt_assembly(model, django, index, args.cursors, profile=model == args.models[0])
                )
                write(report, out)
        finally:
            index.close()
    for model in args.models:
        if "cold" in parts:
            print(f"cold start: {model}...", file=sys.stderr)
            report["cold_start"].append(asyncio.run(cold_start(model, args.threads, httpx)))
            write(report, out)
        if "big" in parts:
            print(f"a completion in {BIG_FILE}: {model}...", file=sys.stderr)
            report["big_file"].append(asyncio.run(big_file_stdio(model, args.threads, django, PREPARED_DB)))
            write(report, out)
    print(markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
