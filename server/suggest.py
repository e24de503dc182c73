"""The suggester: which answer a completion request gets, cheapest source first. No transport.

For a `CompletionContext` (built once by the door), in order:
1. the suggestion cache (typing-through a shown suggestion, or the prepared hot-streak line);
2. a generation already running for this spot that agrees with what was typed since;
3. the model, after an adaptive per-document debounce, superseding older work when the door
   says a newer request makes the older one worthless (an editor: yes; a shared daemon: no).
After a model answer it prepares the next line (hot streak); `prefill` reads a spot's prompt
into the KV cache ahead of the first request. Model work runs on the session's model thread;
this module awaits its futures on the caller's event loop (the language server's, the daemon's).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from server.completion import CompletionResult
from server.latency import (
    BLOCK_OPENER_ENDS,
    AdaptiveDebounce,
    Suggestion,
    SuggestionCache,
    agrees,
    before_closed,
    below_header,
    continuation,
    early_text,
    editor_closed,
    next_line_cursor,
    types_over,
    within_left_out,
    without_editor_rest,
)
from server.model.postprocess import Reason
from server.model.process import ModelProcessDied
from server.model.runtime import Cancelled, CancelToken
from server.request import CompletionContext

if TYPE_CHECKING:
    from server.completion import Completer
    from server.session import Session

log = logging.getLogger(__name__)

# A cancelled request whose generation nobody else awaits keeps running this long, in case the
# next keystroke's request wants to follow it; then it is cancelled.
ORPHAN_GRACE_S = 0.35
# While a generation is still reading its prompt there is no output to compare with what was typed:
# follow it anyway for this many characters of the same line. Starting over on every few keystrokes
# re-reads the suffix each time and, during a burst, never finishes (replay on 2 busy cores: a warm
# generation takes 1-3 s, i.e. 8-20 keystrokes); a finished answer still serves the typed text
# when the model predicted it (typing-through).
FOLLOW_BLIND_CHARS = 24
# While typing, a block is asked for one line at a time unless the model generates at least this
# many tokens per second (a few lines of ~40 tokens within a second); asked for, it is whole.
BLOCK_MIN_TOKENS_S = 40.0
# A block asked for ends at the first new line after this much generation: the user sees its
# finished lines instead of waiting for all of it (llama.vim's t_max_predict_ms does the same).
BLOCK_DEADLINE_MS = 2500
# Weight of the newest measurement in the generation speed's moving average.
SPEED_EWMA_ALPHA = 0.3
# Once no key has come for this long after a request, the user has paused: show the words the
# model has finished (early_text) instead of waiting for its whole line (~1 s for the 1.5B on 2
# cores). Shorter shows fragments during bursts (keys come every ~0.14 s); longer wastes the pause.
# At the start of a new line (after Enter) there is no burst: no wait at all.
EARLY_ANSWER_MS = 300
# A growth step is one uncancellable read of ~GROW_STEP_TOKENS tokens (0.5-1 s for the 1.5B on 2
# cores): started while the user types, it holds up the request after the next Enter, the pause
# that most wants an answer. Steps wait until no key has come for this long (a pause, not the gap
# between two keys of a burst: under ~0.35 s).
GROW_QUIET_S = 0.4
# While paused, how often to look at the running generation for words to show.
EARLY_POLL_S = 0.03


@dataclass(frozen=True)
class SuggestSettings:
    """The suggester's knobs (the language server maps its settings onto these)."""

    debounce_min_ms: int = 25
    debounce_max_ms: int = 200
    debounce_adaptive: bool = True
    hot_streak: bool = True
    prefill: bool = True
    # Early answers (EARLY_ANSWER_MS; 0: off): only for a door whose editor asks again when told
    # that a suggestion grew (the language server: a client announcing `suggestionUpdates`).
    early_answer_ms: int = 0


@dataclass
class Answer:
    """What a request gets: the text to show (None: nothing) and where it came from."""

    text: str | None
    reason: str
    source: str = "model"
    stats_id: int = 0
    latency_ms: float = 0.0
    entry: Suggestion | None = None  # the cache entry of a fresh model answer
    result: CompletionResult | None = None  # the model's answer, when this request ran the model
    confidence: float | None = None  # the model's, in the answer this was shown from (None: unknown)
    # Characters after the cursor the text replaces: closers the editor put there that the answer
    # writes itself, with more code after them on the line (latency.types_over).
    replaces: int = 0


@dataclass
class InFlight:
    """A model generation in progress for one context; later requests may follow it."""

    at: CompletionContext
    future: asyncio.Future[CompletionResult | None]
    token: CancelToken
    partial: str = ""
    waiters: int = 0
    orphan_timer: asyncio.TimerHandle | None = field(default=None, repr=False)
    finished: bool = False  # its answer was taken in (cached, hot streak started)
    early: bool = False  # a request was shown part of it before it ended
    shown: bool = False  # a request was answered from it (following it)
    background: bool = False  # low-priority work (hot streak, prefill) that any request supersedes
    entry: Suggestion | None = None  # the cache entry of its answer


Work = Callable[
    ["Completer", CompletionContext, CancelToken, Callable[[str], None]], "CompletionResult | None"
]


class Suggester:
    """Completion state over a Session: cache, debounce, the running generation, background jobs."""

    def __init__(
        self, session: Session, settings: SuggestSettings | None = None, *, supersede: bool = True
    ) -> None:
        self.session = session
        self.supersede = supersede
        self.cache = SuggestionCache()
        self.debounce = AdaptiveDebounce(0.0, 0.0)
        self.settings = SuggestSettings()
        self.apply_settings(settings or SuggestSettings())
        self._latest: dict[str, int] = {}
        self.inflight: InFlight | None = None
        self.background: asyncio.Future[CompletionResult | None] | None = None
        self._growing: asyncio.Future[bool] | None = None
        self._streak: InFlight | None = None  # the latest hot streak
        self._prefilling: InFlight | None = None  # the latest prefill
        self._grow_token: CancelToken | None = None
        self._grow_timer: asyncio.TimerHandle | None = None
        self.tokens_per_s: float | None = None  # generation speed, a moving average
        # Called with a uri when a suggestion shown early there is complete (the door tells the editor).
        self.on_update: Callable[[str], None] | None = None

    def apply_settings(self, settings: SuggestSettings) -> None:
        self.settings = settings
        self.debounce.min_s = settings.debounce_min_ms / 1000
        self.debounce.max_s = settings.debounce_max_ms / 1000
        self.debounce.adaptive = settings.debounce_adaptive

    # --- requests ------------------------------------------------------------------------

    async def suggest(self, now: CompletionContext, *, explicit: bool = False) -> Answer:
        """The suggestion for a context, from the cheapest source that has one; recorded in the stats."""
        start = time.perf_counter()
        stats = self.session.stats
        stats.record_request()
        name = now.uri.rsplit("/", 1)[-1]
        # An editor that closes brackets (VS Code) puts `)` after the cursor as `(` is typed: the
        # request is answered as if the line ended at the cursor, so that the prompt, the running
        # generation and the cached answers stay those of the line being typed (the `)` changed the
        # prompt's suffix, and the model read the whole body again: 1-3 s on 2 cores), and what is
        # shown stops where it would close what the editor has closed.
        typed, closed = without_editor_rest(now)
        try:
            answer = await self._suggest(typed, explicit, start)
            if closed and answer.text:
                # An answer that goes on past the editor's closers on the line replaces them; any
                # other stops before them.
                over = types_over(answer.text, closed)
                answer.text = within_left_out(answer.text, closed[over:], now.line_prefix) or None
                answer.replaces = over if answer.text else 0
                if answer.text is None:
                    answer.reason = str(Reason.REPEATS_LINE_SUFFIX)
        except asyncio.CancelledError:
            stats.record_cancelled("cancelled")  # the client cancelled (LSP $/cancelRequest, a disconnect)
            log.info(
                "inline %s:%d cancelled after %.0f ms", name, now.line, (time.perf_counter() - start) * 1000
            )
            raise
        answer.latency_ms = (time.perf_counter() - start) * 1000
        if answer.text:
            answer.stats_id = stats.record_shown(now.uri, answer.text, answer.source, answer.latency_ms)
            if answer.entry is not None:
                answer.entry.stats_id = answer.stats_id
        elif answer.reason in ("superseded", "cancelled"):
            stats.record_cancelled(answer.reason)
        else:
            stats.record_none(answer.reason, answer.latency_ms)
        # The stats id is the one the editor's accept command carries: a replay's records name the
        # suggestions they show by it, so what was taken can be matched with this line.
        log.info(
            "inline %s:%d:%d -> %s %s (%.0f ms) #%d confidence %s",
            name,
            now.line,
            now.column,
            answer.source if answer.text else "none",
            answer.reason,
            answer.latency_ms,
            answer.stats_id,
            "-" if answer.confidence is None else f"{answer.confidence:.3f}",
        )
        return answer

    def decline(self, reason: str) -> Answer:
        """A request the door answers with nothing before asking (language off, buffer too large)."""
        self.session.stats.record_request()
        self.session.stats.record_none(reason)
        return Answer(None, reason)

    def cached(self, now: CompletionContext) -> tuple[str, Suggestion] | None:
        """The rest of a cached suggestion that `now` typed into, and the entry (no model, no stats)."""
        hit = self.cache.lookup(now)
        return (hit[1], hit[0]) if hit is not None else None

    def remember(self, at: CompletionContext, text: str, origin: object = None) -> None:
        """Keep an answer made elsewhere (a daemon job) for typing-through."""
        if text:
            self.cache.put(Suggestion(at, text, "model", origin=origin))

    async def _suggest(self, now: CompletionContext, explicit: bool, start: float) -> Answer:
        session = self.session
        index = session.index_for(now.root)
        if index is not None and now.path is not None:
            index.note_view(now.path, now.line)

        hit = self.cache.lookup(now)
        if hit is not None and explicit and hit[0].first_line:
            hit = None  # asked for: the whole block, not the line shown while typing
        if hit is not None:
            entry, rest = hit
            if entry.stats_id:
                session.stats.record_typed_through(entry.stats_id)
            if entry.source == "hot-streak":
                self.prepare_next_line(now, rest)  # the user reached it: keep the streak going
            # A hot-streak line starts at its line's column 0: the editor's indentation is not typing.
            reached = not now.prefix[len(entry.at.prefix) :].strip()
            source = "hot-streak" if entry.source == "hot-streak" and reached else "cache"
            return Answer(rest, "ok", source, confidence=entry.confidence)

        # At a block header's end, and at the end of an answer taken whole where the model ended its
        # line, the answer is the next line, which the hot streak prepares (or is preparing) for
        # the Enter to come: shown below the line at once, for Tab to take it too. A new generation
        # here would read and write the same line again.
        ended = self.cache.ended(now) if not explicit else None
        below = below_header(now) if not explicit else None
        if below is None and ended is not None:
            below = next_line_cursor(ended.at, ended.text)
        if below is not None and not below.prefix.startswith(now.prefix):
            below = None
        lead = below.prefix[len(now.prefix) :] if below is not None else ""
        if below is not None and (hit := self.cache.lookup(below)) is not None:
            self.prepare_next_line(now, lead + hit[1])
            return Answer(lead + hit[1], "ok", "hot-streak", confidence=hit[0].confidence)

        uri = now.uri
        seq = self._latest[uri] = self._latest.get(uri, 0) + 1
        early_ms = self.settings.early_answer_ms if not explicit else 0
        # After Enter the user reads before typing on (no burst to wait out): the first finished
        # words are shown as soon as they exist.
        fresh_line = not now.line_prefix.strip()
        early_at = start + (0 if fresh_line else early_ms / 1000) if early_ms else None
        followed = await self._follow(now, early_at)
        if followed is None and below is not None:
            followed = await self._follow(below, early_at)
            if followed is not None and followed.text:
                followed.text = lead + followed.text
        if followed is not None:
            return followed
        if self._latest.get(uri) != seq:
            return Answer(None, "superseded")
        # At the end of an answer taken whole, the model has already said that its line ends here;
        # what comes next is the next line, which the hot streak prepares for the Enter to come. A
        # generation here would supersede it to write nothing or a trailing comment (never taken in
        # the held-out replays), and the request after Enter then waited behind that generation
        # (jinja2's `return expr1`: 660 ms without a word).
        if ended is not None:
            self.prepare_next_line(ended.at, ended.text)
            return Answer(None, "line-ended")

        completer = session.completer(now.root)
        if completer is None:
            return Answer(None, "model-unavailable" if session.model_error else "model-loading")

        delay = 0.0 if explicit else self.debounce.delay(uri, fresh_line)
        if delay > 0:
            if not fresh_line:
                self.keep_current(now)
            await asyncio.sleep(delay)
            if self._latest.get(uri) != seq:  # a newer request, or the document was closed
                return Answer(None, "superseded")
        slow = self.tokens_per_s is not None and self.tokens_per_s < BLOCK_MIN_TOKENS_S
        return await self._generate(completer, now, first_line=slow and not explicit, early_at=early_at)

    async def _follow(self, now: CompletionContext, early_at: float | None = None) -> Answer | None:
        """Serve `now` from the running generation unless its output already contradicts what was
        typed; from `early_at` on, with the words it has finished past the typed text."""
        flight = self.inflight
        if flight is None or (flight.future.done() and flight.future.cancelled()):
            return None
        closed = editor_closed(flight.at, now) if flight.at.uri == now.uri else None
        if closed is None or not now.prefix.startswith(flight.at.prefix):
            return None
        typed = now.prefix[len(flight.at.prefix) :]
        if flight.partial:
            if not agrees(flight.at, flight.partial, now):
                return None
        elif len(typed) > FOLLOW_BLIND_CHARS or "\n" in typed:
            # No output yet and the prompt is stale: start over (the KV cache keeps what was read).
            return None
        log.info("following the generation at %d (+%d typed)", len(flight.at.prefix), len(typed))
        waited = await self._wait(flight, early_at, typed, closed)
        if isinstance(waited, Answer):
            return waited
        result = waited
        if result is None or not result.text:
            return None
        rest = continuation(flight.at, result.text, now) if typed else result.text
        if not rest:
            return None
        flight.shown = True
        return Answer(rest, "ok", "inflight", confidence=result.confidence)

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
            return None  # the door told the user (on_model_event); the next request restarts it
        except Exception:
            # The job failed (logged by _log_failure): this request gets nothing, nothing else breaks.
            return None
        finally:
            flight.waiters -= 1
            if flight.waiters == 0 and not flight.future.done():
                loop = asyncio.get_running_loop()
                flight.orphan_timer = loop.call_later(ORPHAN_GRACE_S, _cancel_orphan, flight)

    def _submit(
        self,
        work: Work,
        completer: Completer,
        at: CompletionContext,
        *,
        supersede: bool,
        label: str,
        whole_chunks: bool = False,
    ) -> InFlight:
        """Queue `work` for `at` on the model thread, as an InFlight that later requests may follow."""
        flight: InFlight | None = None

        def on_partial(raw: str) -> None:
            if flight is not None:
                flight.partial = raw  # a str assignment: safe to read from the loop

        future, token = self.session.submit(
            lambda t: work(completer, at, t, on_partial),
            supersede=supersede,
            label=f"{label}@{at.line}",
            whole_chunks=whole_chunks,
        )
        wrapped: asyncio.Future[CompletionResult | None] = asyncio.wrap_future(future)
        wrapped.add_done_callback(_log_failure)  # a superseded or orphaned job ends in Cancelled
        flight = InFlight(at, wrapped, token)
        return flight

    async def _generate(
        self, completer: Completer, now: CompletionContext, *, first_line: bool, early_at: float | None = None
    ) -> Answer:
        """Ask the model; an automatic request gets one line (a block when the user asked for it),
        and from `early_at` (perf_counter) on, the words the model has finished (early_text)."""
        log.info("generating at %s:%d", now.uri.rsplit("/", 1)[-1], now.line)
        work = _complete_line if first_line else _complete
        label = "line" if first_line else "block"
        flight = self._submit(work, completer, now, supersede=self.supersede, label=label)
        self.inflight = flight
        # Whoever ends up waiting for it (this request, or a later keystroke's that follows it), the
        # answer is cached and the next line prepared as soon as it exists.
        flight.future.add_done_callback(lambda _: self._finish(flight))
        flight.future.add_done_callback(_log_stopped)
        try:
            waited = await self._wait(flight, early_at)
            if isinstance(waited, Answer):
                return waited
            result = waited
        finally:
            if self.inflight is flight and flight.future.done():
                self.inflight = None
        future = flight.future
        if result is None:
            failed = future.done() and not future.cancelled() and future.exception() is not None
            if failed and not isinstance(future.exception(), Cancelled):
                return Answer(None, "failed")
            return Answer(None, "superseded")
        self._finish(flight)
        log.info("model: %s; %s", result.tokens, result.timings)
        if not result.text:
            return Answer(None, result.reason or "empty", result=result)
        return Answer(
            result.text, "ok", "model", entry=flight.entry, result=result, confidence=result.confidence
        )

    async def _wait(
        self, flight: InFlight, early_at: float | None, typed: str = "", closed: str = ""
    ) -> CompletionResult | Answer | None:
        """The generation's result; or, from `early_at` on (perf_counter), an early Answer with the
        words it has finished past `typed`. The generation then goes on (the waiting task keeps it
        from being orphaned); when it ends, its answer is cached and the door asks the editor to
        look again (on_update)."""
        if early_at is None:
            return await self._await(flight)
        waiting = asyncio.ensure_future(self._await(flight))
        try:
            while True:
                timeout = max(early_at - time.perf_counter(), EARLY_POLL_S)
                done, _ = await asyncio.wait({waiting}, timeout=timeout)
                if done:
                    return waiting.result()
                if time.perf_counter() >= early_at:
                    shown = early_text(flight.partial, typed, flight.at.line_prefix + typed)
                    if shown is not None and closed:
                        # Not what the editor already closed after the cursor (`foo(|)`).
                        shown = before_closed(shown, closed) or None
                    if shown is not None:
                        flight.early = flight.shown = True
                        return Answer(shown, "ok", "early")
        except asyncio.CancelledError:
            waiting.cancel()  # asyncio.wait leaves it running: this request no longer waits
            raise

    def _finish(self, flight: InFlight) -> None:
        """Take in a finished foreground generation once: learn its speed, cache its answer, prepare
        the line after it (hot streak) and grow the place's prompt."""
        future = flight.future
        if flight.finished or not future.done() or future.cancelled() or future.exception() is not None:
            return
        flight.finished = True
        result = future.result()
        if result is None:
            return
        self._measure(result)
        if not result.text:
            return
        flight.entry = Suggestion(
            flight.at,
            result.text,
            "model",
            first_line=result.reason == "first-line",
            ended=_ended(result),
            confidence=result.confidence,
        )
        self.cache.put(flight.entry)
        if flight.early and self.on_update is not None:
            self.on_update(flight.at.uri)
        self.prepare_next_line(flight.at, result.text)
        self.grow(flight.at)

    def _measure(self, result: CompletionResult) -> None:
        generated, ms = result.tokens.get("generated", 0), result.timings.get("generation_ms", 0.0)
        if generated >= 2 and ms > 0:
            rate = generated / (ms / 1000)
            previous = self.tokens_per_s
            self.tokens_per_s = rate if previous is None else previous + SPEED_EWMA_ALPHA * (rate - previous)

    # --- background work (any completion supersedes it) -------------------------------------

    def _background(
        self, at: CompletionContext, work: Work, label: str, *, whole_chunks: bool = False
    ) -> InFlight | None:
        """Queue low-priority model work for `at`; any completion request supersedes it (at the
        end of the prompt chunk being read, with `whole_chunks`)."""
        completer = self.session.completer(at.root)
        if completer is None:
            return None
        flight = self._submit(work, completer, at, supersede=False, label=label, whole_chunks=whole_chunks)
        flight.background = True
        self.background = flight.future

        def done(f: asyncio.Future[CompletionResult | None]) -> None:
            if self.inflight is flight:
                self.inflight = None
            if f.cancelled() or f.exception() is not None:
                return
            result = f.result()
            if result is not None and result.text:
                self.cache.put(
                    Suggestion(
                        at, result.text, "hot-streak", ended=_ended(result), confidence=result.confidence
                    )
                )
                if flight.early and self.on_update is not None:
                    self.on_update(at.uri)
                opens = result.text.rstrip().endswith(BLOCK_OPENER_ENDS)
                if label == "hot-streak" and (flight.shown or opens):
                    # The user is on this line (a request was answered from it): keep the streak
                    # going, as after a model answer. A header's body is prepared at once: it is
                    # shown below the header as soon as the header is taken, and the pause there
                    # (0.4-0.7 s) ended before a body line started then was ready (~1 s).
                    self.prepare_next_line(at, result.text)

        flight.future.add_done_callback(done)
        return flight

    def prepare_next_line(self, at: CompletionContext, text: str) -> None:
        """Hot streak: complete the line after `text` for when the user accepts it and presses Enter."""
        if not self.settings.hot_streak:
            return
        target = next_line_cursor(at, text)
        if target is None or self.cache.lookup(target) is not None:
            return
        running = self.inflight if self.inflight is not None and not self.inflight.future.done() else None
        if running is not None and (running.at == target or not running.background):
            return  # prepared already, or the user's own request is running (it comes first)
        completer = self.session.completer(at.root)
        if completer is None or not completer.same_place(at, _line_above(target)):
            # The answer opened another function (a blank line's `    def ...`): its next line is a
            # new place, a cold prompt of ~450 tokens read in chunks that a request after Enter
            # waited behind (662 ms), and that put out the body's prompt from the KV cache.
            return
        if self._streak is not None and not self._streak.shown:
            # The user has moved on from the line it was preparing the next one for: the line
            # wanted now would queue behind it (985 ms in the tuned regions' replay).
            _drop_unwaited(self._streak)
        # A growth step queued (or being read) would go first: the line wanted next waited 406 ms
        # behind one in the tuned regions' replay. The next model answer resumes growth.
        self.stop_growth()
        flight = self._background(target, _complete_next_line, "hot-streak")
        if flight is not None:
            self.inflight = flight  # a request at the target follows it instead of starting over
            self._streak = flight

    def prefill(self, at: CompletionContext, *, whole_chunks: bool = False) -> bool:
        """Read the prompt for this spot into the KV cache, generating nothing; then let it grow.
        False: nothing was queued (prefill is off, or no model is loaded yet).

        The cache holds one place: background work for another one is dropped (an older prefill,
        the growth of another place, a next line prepared that nobody waits for), so a cursor
        moving from place to place never leaves a queue of reads behind it. `whole_chunks`: where
        the request that supersedes it is most likely for this same place (the cursor rested
        here), the chunk being read is finished rather than thrown away."""
        if not self.settings.prefill:
            return False
        _drop_unwaited(self._prefilling)
        _drop_unwaited(self._streak)
        self.stop_growth()
        self._prefilling = self._background(at, _prefill, "prefill", whole_chunks=whole_chunks)
        self.grow(at)
        return self._prefilling is not None

    def stop_growth(self) -> None:
        """Stop the growth step queued or being read (it ends at its chunk's end); the next model
        answer, or a prefill, starts growing again."""
        if self._growing is not None and not self._growing.done() and self._grow_token is not None:
            self._grow_token.cancel("superseded")

    def keep_current(self, at: CompletionContext) -> None:
        """While keys come faster than the debounce and the model is idle, read what was typed
        into the KV cache (all of the prompt but its last token: see _prefill).

        Such keys never reach the model, so the typed text piled up unread and the request after
        the pause (most often after Enter) read the whole line first: 8-15 tokens, ~1 s for the
        1.5B on 2 cores, before its first word; now it reads a few. Any request supersedes this
        between batches; a shared daemon (no superseding) would make a client wait behind it,
        so there it does not run."""
        if self.settings.prefill and self.supersede and self.session.worker.idle:
            self._background(at, _prefill, "keep-current")

    def grow(self, at: CompletionContext) -> None:
        """Grow this place's prompt towards the full budgets, a step at a time, while the model is
        idle (Completer.grow); any request supersedes it, and the next answer resumes it. A step
        starts only once the keyboard has been quiet for GROW_QUIET_S (see there) and no request
        is waiting on a generation."""
        if self._grow_timer is not None:
            self._grow_timer.cancel()
            self._grow_timer = None
        since = self.debounce.since_last_key(at.uri)
        quiet_in = GROW_QUIET_S - since if since is not None and since < GROW_QUIET_S else 0.0
        # Nor while a request waits on a running generation: if that ends with nothing to show, the
        # request's own generation would queue behind the step (replay: 309 ms after Enter).
        flight = self.inflight
        waited_on = flight is not None and flight.waiters > 0 and not flight.future.done()
        if quiet_in > 0 or waited_on:
            loop = asyncio.get_running_loop()
            self._grow_timer = loop.call_later(quiet_in or GROW_QUIET_S, self.grow, at)
            return
        completer = self.session.completer(at.root)
        if completer is None:
            return
        # A step stopped half-way is read again whole (Completer.grow): stopped inside its chunk,
        # 44 of 52 steps in a replay were lost (8 completed, against 37 letting the chunk end).
        future, self._grow_token = self.session.submit(
            lambda token: completer.grow(at, token),
            supersede=False,
            label=f"grow@{at.line}",
            whole_chunks=True,
        )
        growing: asyncio.Future[bool] = asyncio.wrap_future(future)
        self._growing = growing

        def done(f: asyncio.Future[bool]) -> None:
            if not f.cancelled() and f.exception() is None and f.result() and self._growing is f:
                self.grow(at)

        growing.add_done_callback(done)
        growing.add_done_callback(_log_failure)

    def observe(self, uri: str) -> None:
        """A keystroke in `uri` (the debounce learns the typing speed)."""
        self.debounce.observe(uri)

    def accepted(self, stats_id: int, chars: int | None = None) -> bool:
        """The user accepted (part of) a shown suggestion."""
        return self.session.stats.record_accepted(stats_id, chars)

    def forget(self, uri: str) -> None:
        """The document closed: drop its suggestions; a request waiting on its debounce gives up."""
        self.cache.drop(uri)
        self.debounce.forget(uri)
        self._latest.pop(uri, None)


def _ended(result: CompletionResult) -> bool:
    """Did the model end its line where its answer ends (not cut off by the token limit)?"""
    return result.reason != "max-tokens"


def _complete(
    completer: Completer, at: CompletionContext, token: CancelToken, on_partial: Callable[[str], None]
) -> CompletionResult:
    return completer.complete(at, token, on_partial=on_partial, grow=True, limit=_Deadline(BLOCK_DEADLINE_MS))


class _Deadline:
    """Stop at the first new line after `ms` of generation (counted from the first piece)."""

    def __init__(self, ms: float) -> None:
        self.ms = ms
        self.start: float | None = None

    def __call__(self, raw: str) -> bool:
        now = time.perf_counter()
        if self.start is None:
            self.start = now
        return (now - self.start) * 1000 <= self.ms or not raw.rstrip(" \t").endswith("\n")


def _complete_line(
    completer: Completer, at: CompletionContext, token: CancelToken, on_partial: Callable[[str], None]
) -> CompletionResult:
    return completer.complete(at, token, on_partial=on_partial, first_line=True, grow=True)


def _complete_next_line(
    completer: Completer, at: CompletionContext, token: CancelToken, on_partial: Callable[[str], None]
) -> CompletionResult:
    """The hot streak: `at` is a new line's column 0 (next_line_cursor); the model answers from the
    end of the line above, writing the new line's indentation itself."""
    return completer.complete(
        _line_above(at), token, on_partial=on_partial, first_line=True, grow=True, new_line=True
    )


def _line_above(target: CompletionContext) -> CompletionContext:
    """A hot-streak target (a new line's column 0) as the end of the line above it, where the
    model answers from."""
    return replace(target, prefix=target.prefix[:-1])


def _prefill(
    completer: Completer, at: CompletionContext, token: CancelToken, _: Callable[[str], None]
) -> None:
    # The last token is left unread: a generation re-reads it anyway for its logits, and it is
    # the one that the next keystroke most often tokenizes differently (`(` becomes `(self`).
    prompt = completer.build_prompt(at, grow=True)
    completer.runtime.prefill(prompt.tokens[:-1], token)


def _drop_unwaited(flight: InFlight | None) -> None:
    """Stop background work that is still running and that no request is following."""
    if flight is not None and not flight.future.done() and not flight.waiters:
        flight.token.cancel("superseded")


def _cancel_orphan(flight: InFlight) -> None:
    """Nobody followed a cancelled request's generation in time: stop it."""
    if flight.waiters == 0:
        flight.token.cancel("orphaned")


def _log_stopped(f: asyncio.Future[Any]) -> None:
    """Log how far a cancelled generation got: what superseding it cost, for latency diagnosis."""
    if not f.cancelled() and isinstance(exc := f.exception(), Cancelled) and exc.progress:
        log.info("generation %s %s", exc, exc.progress)


def _log_failure(f: asyncio.Future[Any]) -> None:
    if not f.cancelled():
        exc = f.exception()
        if exc is not None and not isinstance(exc, Cancelled):
            log.warning("background model job failed: %r", exc)
