"""Inline completions (`textDocument/inlineCompletion`) and the `textDocument/completion` fallback.

The handlers are thin; `Suggester` decides where an answer comes from, cheapest first:
1. the suggestion cache (typing-through a shown suggestion, or the prepared hot-streak line);
2. a generation already running for this spot that agrees with what was typed since;
3. the model, after an adaptive per-document debounce, superseding any older work.
After a model answer it prepares the next line (hot streak); after opening a file or jumping
elsewhere it prefills the model's KV cache. Model work always goes through the model thread.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lsprotocol import types

from server.completion import CompletionRequest, CompletionResult, split_at
from server.latency import (
    AdaptiveDebounce,
    Cursor,
    Suggestion,
    SuggestionCache,
    agrees,
    continuation,
    next_line_cursor,
)
from server.lsp.documents import MAX_DOCUMENT_CHARS, Document, cursor_at
from server.model.process import ModelProcessDied
from server.model.runtime import Cancelled, CancelToken

if TYPE_CHECKING:
    from server.completion import Completer
    from server.lsp.server import InfillerServer

log = logging.getLogger(__name__)

ACCEPT_COMMAND = "infiller.accepted"
# A cancelled request whose generation nobody else awaits keeps running this long, in case the
# next keystroke's request wants to follow it; then it is cancelled.
ORPHAN_GRACE_S = 0.35
# While a generation is still reading its prompt there is no output to compare with what was typed:
# follow it anyway for this many characters of the same line. Starting over on every few keystrokes
# re-reads the suffix each time and, during a burst, never finishes (replay on 2 busy cores: a warm
# generation takes 1-3 s, i.e. 8-20 keystrokes); a finished answer still serves the typed text
# when the model predicted it (typing-through).
FOLLOW_BLIND_CHARS = 24
# Sort text that puts the fallback item first among a client's other completion items.
FIRST_SORT_TEXT = "\u0000"
# An identifier fragment right before the cursor (replaced by the fallback completion item).
WORD_BEFORE_CURSOR = re.compile(r"[\w$]+$")


@dataclass
class Answer:
    """What a request gets: the text to show (None: nothing) and where it came from."""

    text: str | None
    reason: str
    source: str = "model"
    stats_id: int = 0
    latency_ms: float = 0.0
    entry: Suggestion | None = None  # the cache entry of a fresh model answer


@dataclass
class InFlight:
    """A model generation in progress for one cursor; later requests may follow it."""

    at: Cursor
    future: asyncio.Future[CompletionResult | None]
    token: CancelToken
    partial: str = ""
    waiters: int = 0
    orphan_timer: asyncio.TimerHandle | None = field(default=None, repr=False)


def request_for(doc: Document, cursor: Cursor) -> CompletionRequest:
    """A CompletionRequest for a (possibly hypothetical) buffer split at `cursor`."""
    line = cursor.prefix.count("\n")
    column = len(cursor.prefix) - (cursor.prefix.rfind("\n") + 1)
    path = doc.path if doc.path is not None else _uri_path(doc.uri)
    return CompletionRequest(
        path=path, text=cursor.prefix + cursor.suffix, line=line, column=column, language=doc.language
    )


def _uri_path(uri: str) -> Path:
    """A stand-in path for documents without one (untitled buffers): only its name is used."""
    return Path(uri.rsplit("/", 1)[-1] or "untitled")


class Suggester:
    """Per-server completion state: cache, debounce, the running generation, background jobs."""

    def __init__(self, server: InfillerServer) -> None:
        self.server = server
        self.cache = SuggestionCache()
        self.debounce = AdaptiveDebounce(0.0, 0.0)
        self.apply_settings()
        self._latest: dict[str, int] = {}
        self._told_too_large: set[str] = set()
        self.inflight: InFlight | None = None
        self.background: asyncio.Future[CompletionResult | None] | None = None

    def apply_settings(self) -> None:
        deb = self.server.settings.debounce
        self.debounce.min_s, self.debounce.max_s = deb.min_ms / 1000, deb.max_ms / 1000
        self.debounce.adaptive = deb.adaptive

    # --- requests ------------------------------------------------------------------------

    def cursor(self, doc: Document, position: types.Position) -> tuple[Cursor, int, int]:
        line, column = cursor_at(doc.text, position)
        prefix, suffix = split_at(doc.text, line, column)
        return Cursor(doc.uri, prefix, suffix), line, column

    async def suggest(self, uri: str, position: types.Position, *, explicit: bool = False) -> Answer:
        """The suggestion for a cursor, from the cheapest source that has one."""
        start = time.perf_counter()
        stats = self.server.stats
        try:
            answer = await self._suggest(uri, position, explicit)
        except asyncio.CancelledError:
            stats.record_cancelled("cancelled")  # $/cancelRequest from the client
            log.info(
                "inline %s:%d:%d cancelled by the client after %.0f ms",
                uri.rsplit("/", 1)[-1],
                position.line,
                position.character,
                (time.perf_counter() - start) * 1000,
            )
            raise
        answer.latency_ms = (time.perf_counter() - start) * 1000
        log.info(
            "inline %s:%d:%d -> %s %s (%.0f ms)",
            uri.rsplit("/", 1)[-1],
            position.line,
            position.character,
            answer.source if answer.text else "none",
            answer.reason,
            answer.latency_ms,
        )
        if answer.text:
            answer.stats_id = stats.record_shown(uri, answer.text, answer.source, answer.latency_ms)
            if answer.entry is not None:
                answer.entry.stats_id = answer.stats_id
        elif answer.reason in ("superseded", "cancelled"):
            stats.record_cancelled(answer.reason)
        else:
            stats.record_none(answer.reason, answer.latency_ms)
        return answer

    async def _suggest(self, uri: str, position: types.Position, explicit: bool) -> Answer:
        server = self.server
        server.stats.record_request()
        doc = server.documents.get(uri)
        if doc is None:
            return Answer(None, "unknown-document")
        if not server.settings.language_enabled(doc.language, doc.language_id):
            return Answer(None, "disabled" if not server.settings.enable else "language-disabled")
        if doc.too_large:
            # Even splitting the buffer per keystroke costs; the model could see a sliver of it anyway.
            if uri not in self._told_too_large:
                self._told_too_large.add(uri)
                server.log(
                    f"{uri.rsplit('/', 1)[-1]}: {len(doc.text):,} characters is over the "
                    f"{MAX_DOCUMENT_CHARS:,} limit for completions; none are offered in it"
                )
            return Answer(None, "document-too-large")
        now, line, _ = self.cursor(doc, position)
        if server.index is not None and doc.path is not None:
            server.index.note_view(doc.path, line)

        hit = self.cache.lookup(now)
        if hit is not None:
            entry, rest = hit
            if entry.stats_id:
                server.stats.record_typed_through(entry.stats_id)
            exact = len(now.prefix) == len(entry.at.prefix)
            source = "hot-streak" if entry.source == "hot-streak" and exact else "cache"
            return Answer(rest, "ok", source)

        seq = self._latest[uri] = self._latest.get(uri, 0) + 1
        followed = await self._follow(now)
        if followed is not None:
            return followed
        if self._latest[uri] != seq:
            return Answer(None, "superseded")

        completer = server.completer
        if completer is None:
            return Answer(None, "model-unavailable" if server.model_error else "model-loading")

        delay = 0.0 if explicit else self.debounce.delay(uri)
        if delay > 0:
            await asyncio.sleep(delay)
            if self._latest[uri] != seq:
                return Answer(None, "superseded")
        doc = server.documents.get(uri)
        if doc is None:
            return Answer(None, "unknown-document")
        return await self._generate(completer, doc, now)

    async def _follow(self, now: Cursor) -> Answer | None:
        """Serve `now` from the running generation unless its output already contradicts what was typed."""
        flight = self.inflight
        if flight is None or (flight.future.done() and flight.future.cancelled()):
            return None
        if (
            flight.at.uri != now.uri
            or flight.at.suffix != now.suffix
            or not now.prefix.startswith(flight.at.prefix)
        ):
            return None
        typed = now.prefix[len(flight.at.prefix) :]
        if flight.partial:
            if not agrees(flight.at, flight.partial, now):
                return None
        elif len(typed) > FOLLOW_BLIND_CHARS or "\n" in typed:
            # No output yet and the prompt is stale: start over (the KV cache keeps what was read).
            return None
        log.info("following the generation at %d (+%d typed)", len(flight.at.prefix), len(typed))
        result = await self._await(flight)
        if result is None or not result.text:
            return None
        rest = continuation(flight.at, result.text, now) if typed else result.text
        return Answer(rest, "ok", "inflight") if rest else None

    async def _await(self, flight: InFlight) -> CompletionResult | None:
        """Wait for a shared generation; a cancelled waiter leaves it running briefly (orphan grace)."""
        flight.waiters += 1
        if flight.orphan_timer is not None:
            flight.orphan_timer.cancel()
            flight.orphan_timer = None
        try:
            return await asyncio.shield(flight.future)
        except (Cancelled, asyncio.CancelledError) as exc:
            if isinstance(exc, asyncio.CancelledError) and not flight.future.done():
                raise
            return None
        except ModelProcessDied:
            return None  # the user was told (window/showMessage); the next request restarts it
        except Exception:
            # The job failed (logged by _ignore_cancelled): this request gets nothing, nothing else breaks.
            return None
        finally:
            flight.waiters -= 1
            if flight.waiters == 0 and not flight.future.done():
                loop = asyncio.get_running_loop()
                flight.orphan_timer = loop.call_later(ORPHAN_GRACE_S, _cancel_orphan, flight)

    async def _generate(self, completer: Completer, doc: Document, now: Cursor) -> Answer:
        request = request_for(doc, now)
        flight: InFlight | None = None

        def on_partial(raw: str) -> None:
            if flight is not None:
                flight.partial = raw  # a str assignment: safe to read from the loop

        def job(token: CancelToken) -> CompletionResult | None:
            return completer.complete(request, token, on_partial=on_partial)

        log.info("generating at %s:%d", now.uri.rsplit("/", 1)[-1], request.line)
        future, token = self.server.run_model(job, supersede=True)
        future.add_done_callback(_ignore_cancelled)  # a superseded or orphaned job ends in Cancelled
        flight = InFlight(now, future, token)
        self.inflight = flight
        try:
            result = await self._await(flight)
        finally:
            if self.inflight is flight and flight.future.done():
                self.inflight = None
        if result is None:
            failed = future.done() and not future.cancelled() and future.exception() is not None
            if failed and not isinstance(future.exception(), Cancelled):
                return Answer(None, "failed")
            return Answer(None, "superseded")
        log.info("model: %s; %s", result.tokens, result.timings)
        if not result.text:
            return Answer(None, result.reason or "empty")
        entry = Suggestion(now, result.text, "model")
        self.cache.put(entry)
        if self.server.settings.hot_streak:
            self.prepare_next_line(doc, now, result.text)
        return Answer(result.text, "ok", "model", entry=entry)

    # --- background work (any completion supersedes it) -------------------------------------

    def _background_job(
        self,
        doc: Document,
        at: Cursor,
        work: Callable[
            [Completer, CompletionRequest, CancelToken, Callable[[str], None]], CompletionResult | None
        ],
    ) -> InFlight | None:
        """Queue low-priority model work for `at`; any completion request supersedes it."""
        completer = self.server.completer
        if completer is None:
            return None
        request = request_for(doc, at)
        flight: InFlight | None = None

        def on_partial(raw: str) -> None:
            if flight is not None:
                flight.partial = raw

        future, token = self.server.run_model(
            lambda token: work(completer, request, token, on_partial), supersede=False
        )
        flight = InFlight(at, future, token)
        self.background = future

        def done(f: asyncio.Future[CompletionResult | None]) -> None:
            if self.inflight is flight:
                self.inflight = None
            if f.cancelled() or f.exception() is not None:
                return
            result = f.result()
            if result is not None and result.text:
                self.cache.put(Suggestion(at, result.text, "hot-streak"))

        future.add_done_callback(done)
        future.add_done_callback(_ignore_cancelled)
        return flight

    def prepare_next_line(self, doc: Document, at: Cursor, text: str) -> None:
        """Hot streak: complete the line after `text` for when the user accepts it and presses Enter."""
        target = next_line_cursor(at, text)
        if target is None or self.cache.lookup(target) is not None:
            return

        def work(
            completer: Completer,
            request: CompletionRequest,
            token: CancelToken,
            on_partial: Callable[[str], None],
        ) -> CompletionResult:
            return completer.complete(request, token, on_partial=on_partial)

        flight = self._background_job(doc, target, work)
        if flight is not None:
            self.inflight = flight  # a request at the target follows it instead of starting over

    def prefill(self, doc: Document, line: int, column: int) -> None:
        """Read the prompt for this spot into the KV cache, generating nothing."""
        if (
            doc.too_large
            or not self.server.settings.prefill
            or not self.server.settings.language_enabled(doc.language, doc.language_id)
        ):
            return
        prefix, suffix = split_at(doc.text, line, column)

        def work(
            completer: Completer, request: CompletionRequest, token: CancelToken, _: Callable[[str], None]
        ) -> None:
            prompt = completer.build_prompt(request)
            completer.runtime.prefill(prompt.tokens, token)
            return None

        self._background_job(doc, Cursor(doc.uri, prefix, suffix), work)

    def forget(self, uri: str) -> None:
        self._told_too_large.discard(uri)
        self.cache.drop(uri)
        self.debounce.forget(uri)
        self._latest.pop(uri, None)


def _cancel_orphan(flight: InFlight) -> None:
    """Nobody followed a cancelled request's generation in time: stop it."""
    if flight.waiters == 0:
        flight.token.cancel("orphaned")


def _ignore_cancelled(f: asyncio.Future[Any]) -> None:
    if not f.cancelled():
        exc = f.exception()
        if exc is not None and not isinstance(exc, Cancelled):
            log.warning("background model job failed: %r", exc)


# --- LSP wrapping ----------------------------------------------------------------------------


def inline_items(answer: Answer, position: types.Position) -> types.InlineCompletionList:
    if not answer.text:
        return types.InlineCompletionList(items=[])
    item = types.InlineCompletionItem(
        insert_text=answer.text,
        range=types.Range(start=position, end=position),
        command=types.Command(
            title="infiller: accepted", command=ACCEPT_COMMAND, arguments=[answer.stats_id, len(answer.text)]
        ),
    )
    return types.InlineCompletionList(items=[item])


def completion_items(answer: Answer, doc: Document, position: types.Position) -> types.CompletionList:
    """One item, the suggestion, replacing the word before the cursor so that client filtering keeps it."""
    if not answer.text:
        return types.CompletionList(is_incomplete=True, items=[])
    line, column = cursor_at(doc.text, position)
    line_text = doc.text.split("\n")[line][:column]
    match = WORD_BEFORE_CURSOR.search(line_text)
    word = match.group(0) if match else ""
    from server.lsp.documents import utf16_len

    start = types.Position(line=position.line, character=position.character - utf16_len(word))
    new_text = word + answer.text
    first_line = new_text.split("\n", 1)[0].strip() or new_text.strip().split("\n", 1)[0]
    item = types.CompletionItem(
        label=first_line[:80] or new_text[:80],
        kind=types.CompletionItemKind.Text,
        detail="infiller",
        documentation=types.MarkupContent(kind=types.MarkupKind.Markdown, value=f"```\n{new_text}\n```"),
        sort_text=FIRST_SORT_TEXT,
        filter_text=new_text,
        preselect=True,
        text_edit=types.TextEdit(range=types.Range(start=start, end=position), new_text=new_text),
        insert_text_format=types.InsertTextFormat.PlainText,
        command=types.Command(
            title="infiller: accepted", command=ACCEPT_COMMAND, arguments=[answer.stats_id, len(answer.text)]
        ),
    )
    return types.CompletionList(is_incomplete=True, items=[item])


def register(server: InfillerServer) -> None:
    suggester = Suggester(server)
    server.suggester = suggester  # type: ignore[attr-defined]

    @server.feature(types.TEXT_DOCUMENT_INLINE_COMPLETION, types.InlineCompletionOptions())
    async def inline_completion(
        ls: InfillerServer, params: types.InlineCompletionParams
    ) -> types.InlineCompletionList:
        explicit = params.context.trigger_kind == types.InlineCompletionTriggerKind.Invoked
        answer = await suggester.suggest(params.text_document.uri, params.position, explicit=explicit)
        return inline_items(answer, params.position)

    @server.feature(types.TEXT_DOCUMENT_COMPLETION, types.CompletionOptions(trigger_characters=[".", "("]))
    async def completion(ls: InfillerServer, params: types.CompletionParams) -> types.CompletionList:
        explicit = (
            params.context is not None and params.context.trigger_kind == types.CompletionTriggerKind.Invoked
        )
        answer = await suggester.suggest(params.text_document.uri, params.position, explicit=explicit)
        doc = ls.documents.get(params.text_document.uri)
        if doc is None:
            return types.CompletionList(is_incomplete=True, items=[])
        return completion_items(answer, doc, params.position)
