"""The peer: llama.cpp's own llama-server, driven the way llama.vim drives it (our code, its behaviour).

What is reproduced from llama.vim (autoload/llama.vim, ggml-org/llama.vim):
- the local context: 256 lines before the cursor line, 64 after, the cursor line split into the
  middle (`prompt`) and the line suffix; a whitespace-only line sends an empty middle;
- a ring buffer of up to 16 chunks of recently seen text (half of a 64-line window, picked at a
  random offset) sent as `input_extra`; chunks are queued when a buffer is entered and when the cursor
  moves far, moved into the ring once a second while the user is idle (≥ 3 s) with an
  `n_predict: 0` request that warms the server's cache; chunks too similar to the text around the
  cursor are evicted;
- one request in flight: a keystroke while one is pending re-arms a 100 ms timer instead of sending
  (the coalescing that plays the role of a debounce); nothing is cancelled;
- `cache_prompt`, the server's `--cache-reuse 256`, `t_max_prompt_ms` 500, `t_max_predict_ms` 250 for
  a first request and 1000 for a speculative one, `n_predict` 128, top-k 40 / top-p 0.9 / infill;
- the suggestion cache: up to 250 answers keyed by hashes of (prefix, middle, suffix), also with the
  first 1-3 prefix lines dropped; on every cursor move the exact key is looked up, then the last
  128 characters are walked back to find an answer the user is typing through;
- a speculative request after a suggestion is shown, for the context as if it were accepted;
- the render filters: trailing empty lines dropped, nothing shown when the suggestion only repeats
  the next lines or the rest of the line, a whitespace-only suggestion is not acceptable.

Not reproduced: yank and save triggers (the replay neither yanks nor saves), instruction editing,
the statusline.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import random
import re
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from bench.replay.accept import Take
from bench.replay.procs import ServerProcess

# llama.vim's defaults (g:llama_config), by the same names.
N_PREFIX = 256
N_SUFFIX = 64
N_PREDICT = 128
T_MAX_PROMPT_MS = 500
T_MAX_PREDICT_MS = 1000
# The first request for a position is capped shorter: a speculative one follows once it is shown.
T_MAX_PREDICT_FIRST_MS = 250
MAX_LINE_SUFFIX = 8
MAX_CACHE_KEYS = 250
RING_N_CHUNKS = 16
RING_CHUNK_SIZE = 64
RING_SCOPE = 1024
RING_UPDATE_S = 1.0
RING_QUEUE_MAX = 16
# In insert mode the ring is updated only once the cursor has rested this long.
RING_IDLE_S = 3.0
# A request while another is in flight is retried after this long (the timer re-arms on every key).
RETRY_S = 0.1
# The suggestion cache looks this many characters back for an answer the user is typing through.
CACHE_LOOKBACK = 128
# Chunks around the cursor are gathered again once it has moved this many lines.
PICK_MOVE_LINES = 32
# Similarity above which a queued chunk evicts an older one, and above which a ring chunk is
# dropped for repeating the text around the cursor.
SIM_EVICT_QUEUED = 0.9
SIM_EVICT_CURSOR = 0.5
SEED = 11
# The llama-server the peer talks to: llama.vim's recommended preset for Qwen2.5-Coder
# (`--fim-qwen-1.5b-default`: batch 1024, the model's full context, cache reuse 256), one slot.
SERVER_BATCH = 1024
SERVER_CTX = 0
SERVER_CACHE_REUSE = 256
SERVER_START_TIMEOUT_S = 300.0


def cache_key(prefix: str, middle: str, suffix: str) -> str:
    return hashlib.sha256((prefix + middle + "Î" + suffix).encode()).hexdigest()


def chunk_similarity(a: list[str], b: list[str]) -> float:
    """llama.vim's chunk_sim: 2·|tokens of b found in a| / (|a| + |b|), tokens split on non-words."""
    tokens_a = [t for t in re.split(r"\W+", "\n".join(a)) if t]
    tokens_b = [t for t in re.split(r"\W+", "\n".join(b)) if t]
    if not tokens_a and not tokens_b:
        return 1.0
    seen = set(tokens_a)
    common = sum(1 for t in tokens_b if t in seen)
    return 2.0 * common / (len(tokens_a) + len(tokens_b))


@dataclass
class LocalContext:
    prefix: str
    middle: str
    suffix: str
    indent: int
    line_cur: str
    line_cur_prefix: str
    line_cur_suffix: str


def local_context(lines: list[str], x: int, y: int, prev: list[str], indent_last: int) -> LocalContext:
    """The text around (x, y) (0-based); with `prev`, as if that suggestion had been accepted there."""
    if not prev:
        line_cur = lines[y]
        lcp, lcs = line_cur[:x], line_cur[x:]
        before = lines[max(0, y - N_PREFIX) : y]
        if not line_cur.strip():
            indent, lcp, lcs = 0, "", ""
        else:
            indent = len(line_cur) - len(line_cur.lstrip())
    else:
        line_cur = lines[y] + prev[0] if len(prev) == 1 else prev[-1]
        lcp, lcs = line_cur, ""
        before = lines[max(0, y - N_PREFIX + len(prev) - 1) : y]
        if len(prev) > 1:
            before = [*before, lines[y] + prev[0], *prev[1:-1]]
        indent = indent_last
    after = lines[y + 1 : y + 1 + N_SUFFIX]
    return LocalContext(
        prefix="\n".join(before) + "\n",
        middle=lcp,
        suffix=lcs + "\n" + "\n".join(after) + "\n",
        indent=indent,
        line_cur=line_cur,
        line_cur_prefix=lcp,
        line_cur_suffix=lcs,
    )


def render(lines: list[str], x: int, y: int, content_text: str) -> list[str] | None:
    """What llama.vim would display at (x, y) for a server answer, as lines relative to the cursor;
    None where it shows nothing acceptable."""
    content = content_text.split("\n")
    while content and content[-1] == "":
        content.pop()
    if not content:
        return None
    line_cur = lines[y]
    if not line_cur.strip():
        # A blank line: the suggestion's own indentation replaces the line's.
        lead = min(len(content[0]) - len(content[0].lstrip()), len(line_cur))
        line_cur = content[0][:lead]
        content[0] = content[0][lead:]
    lcp, lcs = line_cur[:x], line_cur[x:]
    if len(content) == 1 and content[0] == "":
        return None
    if len(content) > 1 and content[0] == "" and content[1:] == lines[y + 1 : y + len(content)]:
        return None
    if len(content) == 1 and content[0] == lcs:
        return None
    cmp_y = y + 1
    while cmp_y < len(lines) - 1 and not lines[cmp_y].strip():
        cmp_y += 1
    if cmp_y < len(lines) and lcp + content[0] == lines[cmp_y]:
        if len(content) == 1:
            return None
        following = lines[cmp_y + 1] if cmp_y + 1 < len(lines) else ""
        if len(content) == 2 and content[-1] == following[: len(content[-1])]:
            return None
        if len(content) > 2 and content[1:] == lines[cmp_y + 1 : cmp_y + len(content)]:
            return None
    if not "\n".join(content).strip():
        return None
    return content


class SuggestionCache:
    """llama.vim's LRU of raw answers by context hash."""

    def __init__(self, size: int = MAX_CACHE_KEYS) -> None:
        self.size = size
        self._data: OrderedDict[str, str] = OrderedDict()

    def get(self, key: str) -> str | None:
        if key not in self._data:
            return None
        self._data.move_to_end(key)
        return self._data[key]

    def put(self, key: str, content: str) -> None:
        self._data[key] = content
        self._data.move_to_end(key)
        while len(self._data) > self.size:
            self._data.popitem(last=False)


def lookup(cache: SuggestionCache, ctx: LocalContext) -> str | None:
    """The cached suggestion for this context: exact, or one whose start the user has since typed
    (looking back up to CACHE_LOOKBACK characters), the longest remainder winning."""
    exact = cache.get(cache_key(ctx.prefix, ctx.middle, ctx.suffix))
    if exact is not None:
        return exact
    pm = ctx.prefix + ctx.middle
    best: str | None = None
    for i in range(min(CACHE_LOOKBACK, len(pm))):
        removed = pm[len(pm) - (i + 1) :]
        key = hashlib.sha256((pm[: len(pm) - (i + 1)] + "Î" + ctx.suffix).encode()).hexdigest()
        cached = cache.get(key)
        if not cached or not cached.startswith(removed):
            continue
        rest = cached[i + 1 :]
        if rest and (best is None or len(rest) > len(best)):
            best = rest
    return best


def repacking_runs(model: str, gguf: Path) -> bool:
    """Whether llama.cpp's weight repacking (its extra buffer types: AMX, ...) runs on this machine:
    the self-test's choice for the model, as infiller's own model gets. Where the CPU advertises
    AMX that the VM does not enable, llama-server dies with it (SIGSEGV right after start-up)."""
    from server.model.registry import load_registry
    from server.model.selftest import configure

    return configure(load_registry().get(model), gguf).extra_bufts


class LlamaServer(ServerProcess):
    """A llama-server process on loopback, started with llama.vim's preset for the given GGUF."""

    name = "llama-server"

    def __init__(
        self,
        binary: Path,
        gguf: Path,
        threads: int,
        ctx: int = SERVER_CTX,
        log: Path | None = None,
        repack: bool = True,
    ):
        super().__init__(log, SERVER_START_TIMEOUT_S)
        self.command = [
            str(binary),
            "-m", str(gguf),
            "--host", "127.0.0.1",
            "--port", str(self.port),
            "-t", str(threads),
            "-tb", str(threads),
            "-b", str(SERVER_BATCH),
            "-ub", str(SERVER_BATCH),
            "-c", str(ctx),
            "--cache-reuse", str(SERVER_CACHE_REUSE),
            "-np", "1",
            *([] if repack else ["--no-repack"]),
        ]  # fmt: skip


@dataclass
class _Chunk:
    data: list[str]
    text: str
    filename: str


class LlamaVimDriver:
    """The replay's driver for the peer: a llama.vim-style client of a llama-server (or, with
    `--daemon`, of `infiller daemon`: bench/replay/daemon.py)."""

    label = "peer"

    def __init__(self, server: ServerProcess, show: Callable[[int, str, Any], None]) -> None:
        self.server = server
        self._show = show
        self.cache = SuggestionCache()
        self.rng = random.Random(SEED)
        self.lines: list[str] = [""]
        self.x = self.y = 0
        self.version = 0
        self.filename = ""
        self.modified = False
        self.ring: list[_Chunk] = []
        self.queued: list[_Chunk] = []
        self.pos_y_pick = -9999
        self.indent_last = 0
        self.hint: list[str] | None = None
        self.t_last_move = time.perf_counter()
        self.job: asyncio.Task[None] | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.session: aiohttp.ClientSession | None = None
        self.ring_task: asyncio.Task[None] | None = None
        self.background: set[asyncio.Task[None]] = set()
        self.counts = {"requests": 0, "speculative": 0, "deferred": 0, "cache_served": 0, "ring_updates": 0}
        self.timings: list[dict[str, Any]] = []
        self.ready_s: float | None = None

    # --- the Driver protocol -------------------------------------------------------------

    async def start(self, workspace: Path) -> None:
        self.ready_s = round(await self.server.start(), 1)
        self.session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=600))
        self.ring_task = asyncio.ensure_future(self._ring_loop())

    async def open(self, path: Path, text: str, version: int, cursor: int) -> None:
        self.filename = str(path)
        self.modified = False
        self._set(text, cursor, version)
        # BufEnter: gather the text around the cursor.
        half = RING_CHUNK_SIZE // 2
        self._pick_chunk(self.lines[max(0, self.y - half) : self.y + half + 1], no_mod=True, do_evict=True)
        # The user asks at the new position (llama.vim's trigger key), as the infiller driver does.
        self.fim(None, is_auto=False, prev=[], use_cache=True)

    def change(self, version: int, text: str, cursor: int, at: int, insert: str, removed: int = 0) -> None:
        self.modified = True
        self._set(text, cursor, version)
        # CursorMovedI: on_move (hide, show from the cache) and then an automatic request.
        self.t_last_move = time.perf_counter()
        self.hint = None
        self._try_hint()
        self.fim(None, is_auto=True, prev=[], use_cache=True)

    async def accepted(self, token: Any, take: Take) -> None:
        """llama.vim inserts the text itself; the cursor move that follows is the next `change`."""

    async def close(self, path: Path) -> None:
        # BufLeave: chunks are not taken from a buffer with unsaved changes.
        half = RING_CHUNK_SIZE // 2
        self._pick_chunk(self.lines[max(0, self.y - half) : self.y + half + 1], no_mod=True, do_evict=True)

    def pids(self) -> dict[str, int]:
        return self.server.pids()

    async def stop(self) -> dict[str, Any]:
        if self.timer is not None:
            self.timer.cancel()
        for task in [self.job, self.ring_task, *self.background]:
            if task is not None:
                task.cancel()
        await asyncio.gather(
            *[t for t in [self.job, self.ring_task, *self.background] if t is not None],
            return_exceptions=True,
        )
        if self.session is not None:
            await self.session.close()
        self.server.stop()
        prompt_ms = [t["prompt_ms"] for t in self.timings if "prompt_ms" in t]
        return {
            **self.counts,
            "cancellations": 0,  # llama.vim never cancels: it defers (see "deferred")
            "ready_s": self.ready_s,
            "server_command": self.server.command,
            "answers": len(self.timings),
            "prompt_tokens_mean": _mean([t.get("prompt_n", 0) for t in self.timings]),
            "prompt_ms_mean": _mean(prompt_ms),
            "predicted_n_mean": _mean([t.get("predicted_n", 0) for t in self.timings]),
        }

    # --- llama.vim's logic -----------------------------------------------------------------

    def _set(self, text: str, cursor: int, version: int) -> None:
        self.lines = text.split("\n")
        head = text[:cursor]
        self.y = head.count("\n")
        self.x = cursor - (head.rfind("\n") + 1)
        self.version = version

    def fim(self, pos: tuple[int, int] | None, *, is_auto: bool, prev: list[str], use_cache: bool) -> None:
        """llama#fim: send one request for `pos` (None: the cursor) unless one is in flight or cached."""
        if self.job is not None and not self.job.done():
            if self.timer is not None:
                self.timer.cancel()
            self.counts["deferred"] += 1
            self.timer = asyncio.get_running_loop().call_later(
                RETRY_S, lambda: self.fim(pos, is_auto=True, prev=prev, use_cache=use_cache)
            )
            return
        x, y = pos if pos is not None else (self.x, self.y)
        if y >= len(self.lines):
            return
        ctx = local_context(self.lines, x, y, prev, self.indent_last)
        if is_auto and len(ctx.line_cur_suffix) > MAX_LINE_SUFFIX:
            return
        t_max_predict_ms = T_MAX_PREDICT_MS if prev else T_MAX_PREDICT_FIRST_MS
        hashes = [cache_key(ctx.prefix, ctx.middle, ctx.suffix)]
        trimmed = ctx.prefix
        for _ in range(3):
            trimmed = trimmed.split("\n", 1)[1] if "\n" in trimmed else ""
            if not trimmed:
                break
            hashes.append(cache_key(trimmed, ctx.middle, ctx.suffix))
        if use_cache and any(self.cache.get(h) is not None for h in hashes):
            return
        self.indent_last = ctx.indent
        # Drop ring chunks that repeat the text around the cursor (they make the model copy it).
        half = RING_CHUNK_SIZE // 2
        around = self.lines[max(0, self.y - half) : self.y + half + 1]
        l0 = self.rng.randint(0, max(0, len(around) - half))
        chunk = around[l0 : min(l0 + half, len(around)) + 1]
        self.ring = [c for c in self.ring if chunk_similarity(c.data, chunk) <= SIM_EVICT_CURSOR]
        request = {
            "id_slot": 0,
            "input_prefix": ctx.prefix,
            "input_suffix": ctx.suffix,
            "input_extra": self._extra(),
            "prompt": ctx.middle,
            "n_predict": N_PREDICT,
            "stop": [],
            "n_indent": ctx.indent,
            "top_k": 40,
            "top_p": 0.90,
            "samplers": ["top_k", "top_p", "infill"],
            "stream": False,
            "cache_prompt": True,
            "t_max_prompt_ms": T_MAX_PROMPT_MS,
            "t_max_predict_ms": t_max_predict_ms,
            "response_fields": ["content", "timings/prompt_n", "timings/prompt_ms", "timings/predicted_n",
                                "timings/predicted_ms", "truncated", "tokens_cached"],
        }  # fmt: skip
        self.counts["requests"] += 1
        if prev:
            self.counts["speculative"] += 1
        self.job = asyncio.ensure_future(self._send(request, hashes))
        if is_auto and abs(y - self.pos_y_pick) > PICK_MOVE_LINES:
            # Gather more context further away: above the prefix window and below the suffix window.
            self._pick_chunk(
                self.lines[max(0, y - RING_SCOPE) : max(0, y - N_PREFIX) + 1], no_mod=False, do_evict=False
            )
            below = min(len(self.lines), y + N_SUFFIX)
            self._pick_chunk(self.lines[below : below + RING_CHUNK_SIZE + 1], no_mod=False, do_evict=False)
            self.pos_y_pick = y

    async def _send(self, request: dict[str, Any], hashes: list[str]) -> None:
        assert self.session is not None
        try:
            async with self.session.post(self.server.url + "/infill", data=json.dumps(request)) as r:
                raw = await r.text()
        except aiohttp.ClientError:
            return
        try:
            answer = json.loads(raw)
        except json.JSONDecodeError:
            return
        if not isinstance(answer, dict) or "content" not in answer:
            return
        self.timings.append({k.split("/")[-1]: v for k, v in answer.items() if k.startswith("timings/")})
        for h in hashes:
            self.cache.put(h, answer["content"])
        if self.hint is None:
            self._try_hint()

    def _try_hint(self) -> None:
        """fim_try_hint: show a cached suggestion for the cursor and ask speculatively beyond it."""
        if self.y >= len(self.lines):
            return
        ctx = local_context(self.lines, self.x, self.y, [], self.indent_last)
        cached = lookup(self.cache, ctx)
        if cached is None:
            return
        content = render(self.lines, self.x, self.y, cached)
        if content is None:
            return
        self.hint = content
        self.counts["cache_served"] += 1
        self._show(self.version, "\n".join(content), None)
        self.fim((self.x, self.y), is_auto=True, prev=content, use_cache=True)

    def _extra(self) -> list[dict[str, Any]]:
        return [{"text": c.text, "filename": c.filename} for c in self.ring]

    def _pick_chunk(self, text: list[str], *, no_mod: bool, do_evict: bool) -> None:
        if (no_mod and self.modified) or RING_N_CHUNKS <= 0 or len(text) < 3:
            return
        if len(text) + 1 < RING_CHUNK_SIZE:
            chunk = text
        else:
            half = RING_CHUNK_SIZE // 2
            l0 = self.rng.randint(0, max(0, len(text) - half))
            chunk = text[l0 : min(l0 + half, len(text)) + 1]
        if any(c.data == chunk for c in self.ring) or any(c.data == chunk for c in self.queued):
            return
        if do_evict:
            self.queued = [c for c in self.queued if chunk_similarity(c.data, chunk) <= SIM_EVICT_QUEUED]
            self.ring = [c for c in self.ring if chunk_similarity(c.data, chunk) <= SIM_EVICT_QUEUED]
        if len(self.queued) == RING_QUEUE_MAX:
            self.queued.pop(0)
        self.queued.append(_Chunk(chunk, "\n".join(chunk) + "\n", self.filename))

    async def _ring_loop(self) -> None:
        while True:
            await asyncio.sleep(RING_UPDATE_S)
            if time.perf_counter() - self.t_last_move < RING_IDLE_S or not self.queued:
                continue
            if len(self.ring) == RING_N_CHUNKS:
                self.ring.pop(0)
            self.ring.append(self.queued.pop(0))
            self.counts["ring_updates"] += 1
            request = {
                "id_slot": 0,
                "input_prefix": "",
                "input_suffix": "",
                "input_extra": self._extra(),
                "prompt": "",
                "n_predict": 0,
                "temperature": 0.0,
                "samplers": [],
                "stream": False,
                "cache_prompt": True,
                "t_max_prompt_ms": 1,
                "t_max_predict_ms": 1,
                "response_fields": [""],
            }
            task = asyncio.ensure_future(self._warm(request))
            self.background.add(task)
            task.add_done_callback(self.background.discard)

    async def _warm(self, request: dict[str, Any]) -> None:
        assert self.session is not None
        with contextlib.suppress(aiohttp.ClientError):
            async with self.session.post(self.server.url + "/infill", data=json.dumps(request)) as r:
                await r.read()


def _mean(xs: list[float]) -> float | None:
    return round(sum(xs) / len(xs), 1) if xs else None
