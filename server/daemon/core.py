"""The daemon's door onto the session core: admission, placing FIM requests, the model jobs.

The model, its thread and the workspace indexes belong to a `server.session.Session`; this module
adds what only the daemon needs. Every generation runs on the session's single model thread
(nothing superseded: requests come from different clients); the HTTP loop only awaits futures.
As in the language server, a FIM request at a new place gets a small prompt first, which then
grows towards the full one while no request comes (Completer.grow, Suggester.grow). A
bounded number of requests may wait for the model: beyond it `submit` raises Busy and the client
gets a clear 503 at once instead of a reply it stopped waiting for long ago. A client that goes
away cancels its token; the model stops between prompt chunks or tokens, and a queued job is
dropped unrun.
"""

from __future__ import annotations

import concurrent.futures
import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from server.completion import CompletionResult, CompletionSettings
from server.daemon import locate
from server.daemon.metrics import Metrics
from server.daemon.protocol import Answer, FimQuery, RawQuery, TooLarge
from server.latency import within_left_out, without_editor_rest
from server.model.runtime import Backend, CancelToken
from server.model.worker import ModelWorker
from server.request import CompletionContext
from server.session import ModelChoice, Session, default_loader
from server.workspace import ROOT_MARKERS, find_root

if TYPE_CHECKING:
    from context.index import Index
    from server.completion import Completer

log = logging.getLogger(__name__)

T = TypeVar("T")

# Requests that may wait for the model besides the one it runs: a completion is stale after a
# few seconds, so a longer queue only delays the 503 that tells the client to back off.
DEFAULT_MAX_QUEUE = 8
# Indexed windows searched for the current file of a request that names none.
LOCATE_WINDOWS = 8
# Files named in input_extra that are checked, most recent first.
LOCATE_NAMED_FILES = 6


class Busy(Exception):
    """The queue is full: answered with 503 and Retry-After."""


class NotReady(Exception):
    """The model is loading or failed to load: answered with 503."""


@dataclass
class DaemonConfig:
    model: str | None = None
    threads: int = 0
    backend: str | None = None
    api_key_env: str | None = None
    roots: tuple[Path, ...] = ()
    max_queue: int = DEFAULT_MAX_QUEUE
    completion: CompletionSettings = field(default_factory=CompletionSettings)


# The suggester's keyboard clock for the daemon's FIM requests (each one is a key to it): growth
# waits for a pause in them, whichever client sent them.
DAEMON_URI = "daemon:"


class Limits:
    """A client's limits on one FIM generation: llama.cpp's t_max_predict_ms, n_indent and stop strings.

    Called with the raw text after each piece; False stops generation. The deadline counts from the
    first generated piece (as llama-server counts from the end of the prompt) and, as there, ends
    the completion only at a new line, so a line is never cut in half.
    """

    def __init__(
        self,
        deadline_ms: float | None = None,
        min_indent: int = 0,
        stop: Iterable[str] = (),
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.deadline_ms = deadline_ms
        self.min_indent = min_indent
        self.stop = tuple(s for s in stop if s)
        self._clock = clock
        self._start: float | None = None

    def __call__(self, raw: str) -> bool:
        now = self._clock()
        if self._start is None:
            self._start = now
        if any(s in raw for s in self.stop):
            return False
        if self.min_indent and _dedented_at(raw, self.min_indent) is not None:
            return False
        overtime = self.deadline_ms is not None and (now - self._start) * 1000 > self.deadline_ms
        return not (overtime and "\n" in raw)

    def cut(self, text: str) -> tuple[str, str]:
        """The text up to the first stop string or under-indented line; and the stop string hit."""
        word = ""
        hits = [(text.find(s), s) for s in self.stop if s in text]
        if hits:
            at, word = min(hits)
            text = text[:at]
        dedent = _dedented_at(text, self.min_indent) if self.min_indent else None
        if dedent is not None:
            text = text[:dedent].rstrip("\n")
        return text, word


def _dedented_at(text: str, min_indent: int) -> int | None:
    """Offset of the first new line (after the first) that starts indented less than min_indent."""
    offset = text.find("\n")
    while offset >= 0:
        start = offset + 1
        line_end = text.find("\n", start)
        line = text[start:] if line_end < 0 else text[start:line_end]
        body = line.lstrip(" \t")
        if body and len(line) - len(body) < min_indent:
            return start
        offset = line_end
    return None


@dataclass
class Placement:
    """Where a FIM request's cursor is: the file (real or stand-in), its text and the 0-based cursor."""

    root: Path | None
    path: Path
    text: str
    line: int
    column: int
    located: bool


class Core:
    """The daemon's door onto a Session: admission, placing FIM requests, the jobs; used by app.py."""

    def __init__(
        self, config: DaemonConfig, metrics: Metrics, load: Callable[[], Backend] | None = None
    ) -> None:
        self.config = config
        self.metrics = metrics
        self.session = Session(
            completion=config.completion,
            worker=ModelWorker("infiller-daemon-model"),
            loader=(lambda _choice, _progress, _event: load()) if load is not None else default_loader,
        )
        self.status = "loading"
        self.error: str | None = None
        self._lock = threading.Lock()
        self._in_flight = 0
        self.closed = False
        # The place of the last FIM answer (set on the model thread): its prompt grows while idle.
        self._grow_at: CompletionContext | None = None

    # --- lifecycle ---------------------------------------------------------------------------

    @property
    def backend(self) -> Backend | None:
        return self.session.backend

    def start(self) -> concurrent.futures.Future[Backend]:
        """Load the model on the model thread and open the configured roots' indexes."""
        for root in self.config.roots:
            self.open_root(root)
        c = self.config
        future = self.session.start_model(ModelChoice(c.model, c.threads, c.backend, c.api_key_env))

        def loaded(f: concurrent.futures.Future[Backend]) -> None:
            if f.cancelled() or f.exception() is not None:
                exc = f.exception() if not f.cancelled() else None
                self.status, self.error = "failed", f"{type(exc).__name__}: {exc}"
                log.error("loading the model failed: %s", self.error)
                return
            self.status = "ready"
            self.metrics.model_ready.set(1)
            log.info("model %s ready", f.result().name)

        future.add_done_callback(loaded)
        return future

    def close(self) -> None:
        self.closed = True
        self.session.close()

    @property
    def model_name(self) -> str:
        if self.backend is not None:
            return self.backend.name
        return self.config.model or "infiller"

    @property
    def restarts(self) -> int:
        return self.session.restarts

    # --- admission ---------------------------------------------------------------------------

    def submit(self, job: Callable[[CancelToken], T]) -> tuple[concurrent.futures.Future[T], CancelToken]:
        """Queue a model job; raises NotReady before the model is loaded and Busy when the queue is full."""
        if self.status != "ready":
            raise NotReady(self.error or "the model is loading")
        with self._lock:
            if self._in_flight > self.config.max_queue:
                self.metrics.rejected.inc()
                raise Busy(f"the model is busy: {self._in_flight - 1} requests are already waiting")
            self._in_flight += 1
            self.metrics.queue_depth.set(self._in_flight)
        future, token = self.session.submit(job, supersede=False)
        future.add_done_callback(self._finished)
        return future, token

    def _finished(self, _future: concurrent.futures.Future[Any]) -> None:
        with self._lock:
            self._in_flight -= 1
            self.metrics.queue_depth.set(self._in_flight)

    # --- workspaces --------------------------------------------------------------------------

    def open_root(self, root: Path) -> concurrent.futures.Future[Any] | None:
        """Index a workspace in the background (once); the future is done when it is up to date."""
        return self.session.open_root(root)

    def root_for(self, path: Path) -> Path | None:
        """The known workspace holding path, else its project root (indexed on demand) when it has one."""
        resolved = path.resolve()
        known = sorted(self.session.roots(), key=lambda r: len(r.parts), reverse=True)
        for root in known:
            if resolved.is_relative_to(root):
                return root
        root = find_root(resolved)
        if any((root / marker).exists() for marker in ROOT_MARKERS):
            self.open_root(root)
            return root
        return None

    def index_ready(self, root: Path | None) -> concurrent.futures.Future[Any] | None:
        return self.session.open_root(root) if root is not None and root in self.session.roots() else None

    def _ready_indexes(self) -> list[tuple[Path, Index]]:
        return self.session.ready_indexes()

    def _completer(self, root: Path | None, *, context: bool = True) -> Completer:
        completer = self.session.completer(root, context=context)
        if completer is None:
            raise NotReady(self.error or "the model is loading")
        return completer

    # --- placing a FIM request -----------------------------------------------------------------

    def place(self, query: FimQuery) -> Placement:
        """The file and cursor a FIM request is about (runs on the model thread: it reads the index)."""
        root: Path | None = None
        path: Path | None = None
        if query.filename:
            root, path = self._named(query.filename)
        if path is None:
            root, path = self._located(query)
        located = path is not None
        head = ""
        if path is not None and root is not None:
            index = dict(self._ready_indexes()).get(root)
            rel = index.rel(path) if index is not None else None
            file_text = index.read_text(rel) if index is not None and rel else None
            if file_text is not None:
                head = locate.head_before(file_text, query.prefix)
        if path is None:
            roots = self.config.roots
            root = roots[0].resolve() if roots else None
            path = (root or Path.cwd()) / _stand_in_name(query)
        prefix = head + query.prefix
        line = prefix.count("\n")
        column = len(prefix) - (prefix.rfind("\n") + 1)
        return Placement(root, path, prefix + query.suffix, line, column, located)

    def _named(self, name: str) -> tuple[Path | None, Path | None]:
        candidate = Path(name).expanduser()
        if candidate.is_absolute():
            return self.root_for(candidate), candidate
        for root, index in self._ready_indexes():
            if (root / candidate).is_file():
                return root, root / candidate
            matches = locate.names_matching(name, index.files())
            if matches:
                return root, root / matches[0]
        return None, None

    def _located(self, query: FimQuery) -> tuple[Path | None, Path | None]:
        tail = locate.tail_lines(query.prefix)
        if not tail:
            return None, None
        best: tuple[float, Path, Path] | None = None
        names = locate.identifiers(tail)
        for root, index in self._ready_indexes():
            files = index.files()
            candidates: dict[str, None] = {}
            for chunk in reversed(query.extra[-LOCATE_NAMED_FILES:]):
                for rel in locate.names_matching(chunk.filename, files)[:2]:
                    candidates.setdefault(rel, None)
            for window in index.search_windows(names, LOCATE_WINDOWS):
                candidates.setdefault(window.path, None)
            texts = {rel: text for rel in candidates if (text := index.read_text(rel)) is not None}
            found = locate.best_match(tail, texts)
            if found is not None:
                score = locate.match_score(tail, texts[found])
                if best is None or score > best[0]:
                    best = (score, root, root / found)
        return (best[1], best[2]) if best else (None, None)

    # --- jobs (run on the model thread) --------------------------------------------------------

    def fim(self, query: FimQuery, cancel: CancelToken) -> Answer:
        """Fill in the middle with repository context, infiller's post-processing and the client's limits."""
        place = self.place(query)
        completer = self._completer(place.root)
        # llama.vscode's suffix starts with what VS Code auto-closed (`foo(|)`): answered as in the
        # language server (server/suggest.py), so the prompt stays that of the line being typed.
        request, closed = without_editor_rest(
            CompletionContext.at(
                place.path, place.text, place.line, place.column, uri=DAEMON_URI, root=place.root
            )
        )
        file = str(place.path) if place.located else None
        if query.prefill_only:
            prompt = completer.build_prompt(request, grow=True)
            assert self.backend is not None
            stats = self.backend.prefill(prompt.tokens, cancel)
            answer = Answer(
                text="",
                model=self.model_name,
                stop_type="limit",
                prompt_tokens=stats.prompt_tokens,
                reused_tokens=stats.reused_tokens,
                prompt_ms=stats.prompt_ms,
                file=file,
                context=[c.path for c in prompt.chunks],
                reason="prefill",
            )
        else:
            limits = Limits(query.deadline_ms, query.min_indent, query.stop)
            result = completer.complete(request, cancel, max_tokens=query.max_tokens, limit=limits, grow=True)
            text, word = limits.cut(result.text or "")
            answer = _answer(result, within_left_out(text, closed, request.line_prefix), word, file)
        self.metrics.record_answer(answer)
        self._grow_at = request
        return answer

    # --- the prompt's growth (on the event loop: the suggester's timers belong to it) -------------

    def arrived(self) -> None:
        """A FIM request came: a growth step waits for the next pause (one queued now would hold
        this request up, the step being read is finished)."""
        suggester = self.session.suggester
        suggester.observe(DAEMON_URI)
        suggester.stop_growth()

    def grow(self) -> None:
        """Grow the prompt of the place last answered, a step at a time, while no request comes."""
        if self._grow_at is not None:
            self.session.suggester.grow(self._grow_at)

    # --- typing-through (on the event loop: the suggester's cache belongs to it) ------------------

    def typed_through(self, query: FimQuery) -> Answer | None:
        """The rest of an earlier answer that the client's text since then typed into, if any.

        A client asking again after each keystroke (llama.vim, Continue) gets the remainder of
        the suggestion it is typing through at once, without the model or the queue.
        """
        if query.prefill_only:
            return None
        hit = self.session.suggester.cached(_fim_context(query))
        if hit is None:
            return None
        text, word = Limits(None, query.min_indent, query.stop).cut(hit[0])
        if not text:
            return None
        self.metrics.typed_through.inc()
        origin = hit[1].origin
        file, context = (origin.file, origin.context) if isinstance(origin, Answer) else (None, [])
        return Answer(
            text=text,
            model=self.model_name,
            stop_type="word" if word else "eos",
            stopping_word=word,
            file=file,
            context=context,
            reason="typed-through",
        )

    def remember(self, query: FimQuery, answer: Answer) -> None:
        """Keep a FIM answer for typing-through (call on the event loop)."""
        if not query.prefill_only and answer.text:
            self.session.suggester.remember(_fim_context(query), answer.text, origin=answer)

    def complete(
        self,
        request: CompletionContext,
        root: Path | None,
        cancel: CancelToken,
        *,
        context: bool,
        reset_cache: bool,
    ) -> CompletionResult:
        """Exactly what `infiller complete` computes in-process, for its daemon path."""
        completer = self._completer(root, context=context)
        result = completer.complete(request, cancel, reset_cache=reset_cache)
        self.metrics.record_answer(_answer(result, result.text or "", "", str(request.path)))
        return result

    def raw(
        self, query: RawQuery, cancel: CancelToken, on_piece: Callable[[str], None] | None = None
    ) -> Answer:
        """Continue a prompt as llama-server's /completion does: greedy, no retrieval, no post-processing."""
        backend = self.backend
        assert backend is not None
        tokens = list(query.prompt) if isinstance(query.prompt, tuple) else backend.tokenize(query.prompt)
        if len(tokens) >= backend.n_ctx:
            raise TooLarge(f"the prompt has {len(tokens)} tokens; the context window holds {backend.n_ctx}")
        if not query.cache_prompt:
            backend.reset()
        answer = Answer(text="", model=self.model_name, prompt_tokens=len(tokens))
        if query.max_tokens == 0:
            stats = backend.prefill(tokens, cancel)
            answer.reused_tokens, answer.prompt_ms, answer.stop_type = (
                stats.reused_tokens,
                stats.prompt_ms,
                "limit",
            )
            self.metrics.record_answer(answer)
            return answer
        room = backend.n_ctx - len(tokens) - 1
        budget = room if query.max_tokens < 0 else min(query.max_tokens, room)
        stops = StopScanner(query.stop, on_piece)
        stats = backend.generate(tokens, max_tokens=budget, on_text=stops.feed, cancel=cancel)
        stops.flush()
        answer.text = stops.text
        answer.stopping_word = stops.word
        answer.stop_type = "word" if stops.word else ("limit" if stats.stop_reason == "max-tokens" else "eos")
        answer.reused_tokens = stats.reused_tokens
        answer.generated_tokens = stats.generated_tokens
        answer.prompt_ms, answer.generation_ms = stats.prompt_ms, stats.generation_ms
        answer.reason = stats.stop_reason
        self.metrics.record_answer(answer)
        return answer

    def tokenize(self, text: str) -> list[int]:
        if self.backend is None:
            raise NotReady(self.error or "the model is loading")
        return self.backend.tokenize(text)


class StopScanner:
    """Streams generated text while holding back what could be the start of a stop string."""

    def __init__(self, stop: Iterable[str], emit: Callable[[str], None] | None) -> None:
        self.stop = tuple(s for s in stop if s)
        self._hold = max((len(s) for s in self.stop), default=1) - 1
        self._emit = emit
        self._text = ""
        self._sent = 0
        self.word = ""

    def feed(self, piece: str) -> bool:
        self._text += piece
        hits = [(self._text.find(s), s) for s in self.stop if s in self._text]
        if hits:
            at, self.word = min(hits)
            self._text = self._text[:at]
            self._send(len(self._text))
            return False
        self._send(len(self._text) - self._hold)
        return True

    def flush(self) -> None:
        self._send(len(self._text))

    def _send(self, upto: int) -> None:
        if upto > self._sent:
            if self._emit is not None:
                self._emit(self._text[self._sent : upto])
            self._sent = upto

    @property
    def text(self) -> str:
        return self._text


def _answer(result: CompletionResult, text: str, word: str, file: str | None) -> Answer:
    if word:
        stop_type = "word"
    elif result.reason in ("limit", "max-tokens"):
        stop_type = "limit"
    else:
        stop_type = "eos"
    return Answer(
        text=text,
        model=result.model,
        stop_type=stop_type,
        stopping_word=word,
        prompt_tokens=result.tokens["prompt"],
        reused_tokens=result.tokens["reused"],
        generated_tokens=result.tokens["generated"],
        prompt_ms=result.timings["prompt_ms"],
        generation_ms=result.timings["generation_ms"],
        file=file,
        context=[c.path for c in result.chunks],
        reason=result.reason,
    )


def _fim_context(query: FimQuery) -> CompletionContext:
    """The suggestion-cache key of a FIM request: the client's own text around its cursor."""
    return CompletionContext(f"daemon:{query.filename or ''}", query.prefix, query.suffix)


def _stand_in_name(query: FimQuery) -> str:
    """A file name for a request no indexed file matches: its language from the named files' suffix."""
    for name in (query.filename, *(c.filename for c in reversed(query.extra))):
        if name and Path(name).suffix:
            return "untitled" + Path(name).suffix
    return "untitled"
