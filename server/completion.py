"""One completion, end to end: prompt assembly under exact token budgets, generation, post-processing.

Used by `infiller complete`, the LSP server, and the benchmarks. Prompt layout (see
templates.py): repository context chunks first (stable across keystrokes), then the file
prefix (its start snapped to a line grid so it moves rarely), then a short suffix.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from context.anchor import middle_start
from context.budget import header_tokens
from context.imports import import_header
from context.syntax import language_for_path
from server.model.postprocess import Mode, Outcome, Plan, StreamFilter, closers_only, plan_completion
from server.model.registry import ProgressFn as Report
from server.model.runtime import Backend, CancelToken, GenerationStats
from server.model.templates import ContextFile
from server.request import CompletionContext

if TYPE_CHECKING:
    from context.index import Index
    from context.retrieve import Chunk, RetrievalResult

log = logging.getLogger(__name__)

T = TypeVar("T")

# The prefix window's first line is a multiple of this: typing never shifts it, so the
# KV cache of everything before the cursor stays valid until the window really must move.
PREFIX_SNAP_LINES = 32
# Lines after the cursor shown as suffix at most: the lines right after the cursor are what FIM
# needs; further ones cost reading time on every new line.
SUFFIX_MAX_LINES = 12
# The end of the cursor line that is healed rather than put in the prompt: trailing spaces, a
# partial word with the spaces before it (`x = ` -> " ", `total = su` -> " su"), or an attribute
# access begun (`shapes.` -> ".", `self.va` -> ".va"): the tokenizer has `.name` tokens, and a
# model shown a bare `.` tends to go on with a word token that has its leading space (` scaled`).
HEAL_TAIL = re.compile(r"(?:\.\w*|[ \t]*\w+|[ \t]+)$")
# Longer tails (a long identifier) are not healed: each healed character costs generated tokens.
MAX_HEAL_CHARS = 24
# The file's import statements, shown above a prefix window that no longer reaches them, at most
# this long (about 256 tokens, paid out of the window): they say which names the file may use.
IMPORT_HEADER_MAX_CHARS = 1024
# The middle (the function body typed so far, after the FIM middle marker) holds at most this many
# tokens; a longer body moves the middle's start down in steps of MIDDLE_SNAP_LINES lines, so that
# the start still stays put for many keystrokes. Each move re-reads the suffix and the middle
# (3-6 s for the 1.5B on 2 cores); with steps of 8 lines a docstring-heavy function moved it every
# few lines typed (replay 15: 2 of its 7 long reads). A step of 24 lines leaves room for ~20 more.
MAX_MIDDLE_TOKENS = 384
MIDDLE_SNAP_LINES = 24
# A prompt in a new place starts small and grows while the user types (Completer.grow): a first
# answer in seconds instead of the full prompt's minute on a slow CPU. The cold prompt's budgets:
COLD_PREFIX_TOKENS = 256
COLD_SUFFIX_TOKENS = 64
# ... and the best-ranked repository context (the definitions the code near the middle's start
# uses): the first answer already knows the rest of the repository.
COLD_CONTEXT_TOKENS = 128
# Each growth step adds about this many tokens (older lines of the prefix window, then context
# chunks, each inserted before those shown; before them the whole suffix at once): a step is one
# read that cannot be cancelled half-way, so it must fit in a typing pause. The context grew at
# once before (up to 256 tokens, 2-5 s for the 1.5B on 2 cores): a key after it waited that long.
GROW_STEP_TOKENS = 32
# Token counts of prefix blocks remembered per Completer (by block text), then dropped all at once.
BLOCK_CACHE_SIZE = 2048


@dataclass
class CompletionSettings:
    """Budgets in model tokens (counted with the model's own tokenizer)."""

    # The plain long-FIM baseline's window, which beat the old 768 + 48 on held-out cases (58.5% vs
    # 47.2% exact). It is cheap while typing: the cursor line follows the FIM middle marker, so a
    # keystroke reads only what it added; the suffix is read again once per new line, not per key.
    prefix_tokens: int = 1536
    suffix_tokens: int = 256
    # Cross-file context: modest, since untargeted context measured no gain and doubled latency.
    context_tokens: int = 384
    max_tokens_line: int = 48
    max_tokens_block: int = 128
    # The cursor line's typed text after the FIM middle marker (llama.vim's layout): see build_prompt.
    cursor_line_in_middle: bool = True
    # ... and, inside a function, the whole body typed so far (context/anchor.py); retrieval then
    # looks around the body's start instead of the cursor.
    function_body_in_middle: bool = True
    # Python: the file's imports above a window that starts below them (see `_with_imports`):
    # on the development set's cross-file cases 62.8% exact against 59.3% without (113 cases, 5
    # won, 1 lost, at the same prompt length).
    imports_above_window: bool = True
    sources: tuple[str, ...] | None = None
    # A second pass whose retrieval reads the first answer as if typed (RepoCoder's iteration):
    # the names the model guessed find the code that defines or uses them. Off by default: it
    # costs a second generation and, as the context comes first, a re-read of the whole prompt.
    refine: bool = False


@dataclass(frozen=True)
class Budgets:
    """Token budgets of one prompt's parts."""

    prefix: int
    suffix: int
    context: int


@dataclass
class _Growth:
    """How far the prompt of one place (the text before the middle, the suffix) has grown."""

    place: tuple[object, ...]
    step: int = 0


@dataclass
class Prompt:
    text: str
    tokens: list[int]
    heal: str  # the output must start with this (left out of `text`): see Runtime.generate
    plan: Plan
    prefix: str
    suffix: str
    context_text: str
    chunks: list[Chunk] = field(default_factory=list)
    retrieval: RetrievalResult | None = None
    retrieval_ms: float = 0.0
    assembly_ms: float = 0.0


@dataclass
class CompletionResult:
    text: str | None
    reason: str
    mode: str
    model: str
    timings: dict[str, float]
    tokens: dict[str, int]
    chunks: list[Chunk]
    raw: str = ""
    prompt: Prompt | None = None
    # Geometric-mean probability of the generated tokens (1.0 when none were generated).
    confidence: float = 1.0

    def as_json(self) -> dict[str, Any]:
        return {
            "completion": self.text,
            # Why nothing is suggested (null when something is), and why generation stopped.
            "reason": self.reason if self.text is None else None,
            "stop_reason": self.reason if self.text is not None else None,
            "mode": self.mode,
            "model": self.model,
            "confidence": round(self.confidence, 4),
            "latency_ms": self.timings,
            "tokens": self.tokens,
            "context": [
                {
                    "path": c.path,
                    "source": c.source,
                    "score": round(c.score, 4),
                    "tokens": c.tokens,
                    "lines": c.lines,
                }
                for c in self.chunks
            ],
        }


def _first_line_end(raw: str) -> int | None:
    """Where the first line with code in `raw` ends (its new line), if it has ended. A line that
    only closes brackets (`}` after a block's last statement) goes with the line after it: alone it
    is one key, not worth a suggestion, and the line the user pauses for comes after it."""
    start = 0
    while (end := raw.find("\n", start)) >= 0:
        line = raw[start:end]
        if line.strip() and not closers_only(line):
            return end
        start = end + 1
    return None


def _last_chunks(chunks: list[Chunk], budget: int, count_tokens: Callable[[str], int]) -> list[Chunk]:
    """The longest run of chunks at the end of `chunks` within `budget` tokens (headers counted).

    The retriever puts the most important chunk last, nearest the file; a growing prompt shows
    these first, and the growth step that completes the context inserts the others before them,
    unchanged. Retrieving at the small budget instead cut chunks differently (a definition's
    first lines, then all of it), so the context changed from its first chunk on and the whole
    prompt was read again: 280-600 tokens, 3-6 s for the 1.5B on 2 cores, at every new place.
    """
    total, start = 0, len(chunks)
    while start > 0:
        chunk = chunks[start - 1]
        total += chunk.tokens + header_tokens(chunk.path, count_tokens)
        if total > budget:
            break
        start -= 1
    return chunks[start:]


def _relative(path: Path, root: Path | None) -> str:
    if root is not None:
        try:
            return path.resolve().relative_to(root.resolve()).as_posix()
        except ValueError:
            pass
    return path.name


class Completer:
    """Builds prompts and runs completions for one model (and optionally one workspace index)."""

    def __init__(
        self,
        runtime: Backend,
        *,
        root: Path | None = None,
        index: Index | None = None,
        settings: CompletionSettings | None = None,
        sources: Collection[str] | None = None,
    ) -> None:
        self.runtime = runtime
        self.root = root
        self.index = index
        self.settings = settings or CompletionSettings()
        self._retriever: Any = None
        if index is not None:
            from context.retrieve import DEFAULT_SOURCES, Retriever

            chosen = sources if sources is not None else (self.settings.sources or DEFAULT_SOURCES)
            self._retriever = Retriever(index, sources=tuple(chosen))
        self._sanitize = runtime.template.special_tokens()
        self._blocks: dict[str, int] = {}
        # The last input and result of each pure, costly step of build_prompt (see _memo).
        self._memos: dict[str, tuple[object, Any]] = {}
        # Whether the prompt's tokens may be taken as the memoized tokens of its fixed part plus the
        # tokens of the body typed after the middle marker (None: not checked yet; see _tokens_after).
        self._split_tokens: bool | None = None
        self._growth: _Growth | None = None
        spec = runtime.spec
        self._middle_layout = self.settings.cursor_line_in_middle and (
            spec is None or spec.cursor_line_in_middle
        )

    @classmethod
    def load(
        cls,
        model: str | None = None,
        root: Path | None = None,
        settings: CompletionSettings | None = None,
        index: Index | None = None,
        sources: Collection[str] | None = None,
        threads: int | None = None,
        report: Report | None = None,
    ) -> Completer:
        """Load a registry model (it must be pulled) and wrap it (threads: None = the self-test's choice)."""
        from server.model.loader import load_runtime

        runtime = load_runtime(model, n_threads=threads, report=report)
        return cls(runtime, root=root, index=index, settings=settings, sources=sources)

    @property
    def model_name(self) -> str:
        return self.runtime.name

    def count_tokens(self, text: str) -> int:
        return self.runtime.count_tokens(text)

    def _clean(self, text: str) -> str:
        # User text must not contain the template's control strings: they would be parsed as tokens.
        for token in self._sanitize:
            if token in text:
                text = text.replace(token, "")
        return text

    def _block_tokens(self, block: str) -> int:
        count = self._blocks.get(block)
        if count is None:
            if len(self._blocks) >= BLOCK_CACHE_SIZE:
                self._blocks.clear()
            count = self._blocks[block] = self.count_tokens(block)
        return count

    def _memo(self, step: str, key: object, compute: Callable[[], T]) -> T:
        """`compute()`, or its result from the previous call of `step` when `key` is equal: while the
        user types in a function body neither the text above it nor the text after the cursor
        changes, so windowing and counting them again each keystroke would repeat the same work
        (tens of ms per keystroke in a 9,000-line file)."""
        last = self._memos.get(step)
        if last is not None and last[0] == key:
            result: T = last[1]
            return result
        value = compute()
        self._memos[step] = (key, value)
        return value

    def _window_prefix(self, prefix: str, budget: int) -> str:
        return self._memo("prefix", (prefix, budget), lambda: self._compute_window_prefix(prefix, budget))

    def _compute_window_prefix(self, prefix: str, budget: int) -> str:
        """The last lines of `prefix` within `budget` tokens, starting on the PREFIX_SNAP_LINES grid.

        Token counts are summed per grid block, each counted once and remembered by its text
        (typing changes one block), then the chosen window is counted exactly once. Counting the
        whole remaining prefix per grid step tokenized tens of MB per request on a 9,000-line file.
        """
        if budget <= 0 or not prefix:
            return ""
        lines = prefix.split("\n")
        first_block = (len(lines) - 1) // PREFIX_SNAP_LINES * PREFIX_SNAP_LINES
        start, total = len(lines), 0
        for block_start in range(first_block, -1, -PREFIX_SNAP_LINES):
            block = "\n".join(lines[block_start : block_start + PREFIX_SNAP_LINES])
            total += self._block_tokens(block) + (block_start + PREFIX_SNAP_LINES < len(lines))
            if total > budget:
                break
            start = block_start
        if start == len(lines):  # the cursor's own block is over budget: one huge block or line
            start = first_block
        window = "\n".join(lines[start:])
        # Block sums can differ from the joined text's count by a token per block boundary.
        while self.count_tokens(window) > budget:
            if start + PREFIX_SNAP_LINES < len(lines):
                start += PREFIX_SNAP_LINES
                window = "\n".join(lines[start:])
            else:
                # One huge line: drop its head in quarters until it fits (never over budget).
                window = window[max(1, len(window) // 4) :]
        return window

    def _above(self, text: str, language: str | None, budget: int) -> str:
        """What the prompt shows of `text` (everything before the middle): the window, or while
        growing (`budget` under the full one) its last lines, so growth inserts lines above them;
        at the full budget, with the file's imports above it where the window misses them."""
        full = self.settings.prefix_tokens
        if budget < full:
            return self._tail_lines(self._window_prefix(text, full), budget)
        if self.settings.imports_above_window and language == "python":
            return self._memo("imports", (text, full), lambda: self._with_imports(text, full))
        return self._window_prefix(text, full)

    def _with_imports(self, text: str, budget: int) -> str:
        """The window of `text` within `budget` tokens, its first lines given up for the import
        statements above it (at most IMPORT_HEADER_MAX_CHARS), which come first.

        A window deep in a long file shows no imports, and the model then guesses which module a
        name comes from (`babel.Babel` for `latex2e.Babel`) or writes one it cannot see."""
        window = self._window_prefix(text, budget)
        above = len(text) - len(window)
        header = import_header(text[:above], IMPORT_HEADER_MAX_CHARS)
        if not header:  # the window shows the file's top, or the file imports nothing
            return window
        window = self._window_prefix(text, max(0, budget - self.count_tokens(header + "\n\n")))
        if len(text) - len(window) > above:
            # The smaller window starts lower: imports it no longer shows join the header.
            header = import_header(text[: len(text) - len(window)], IMPORT_HEADER_MAX_CHARS)
        return header + "\n\n" + window

    def _window_suffix(self, suffix: str, budget: int) -> str:
        return self._memo("suffix", (suffix, budget), lambda: self._compute_window_suffix(suffix, budget))

    def _compute_window_suffix(self, suffix: str, budget: int) -> str:
        lines = suffix.split("\n", SUFFIX_MAX_LINES)[:SUFFIX_MAX_LINES]
        while len(lines) > 1 and self.count_tokens("\n".join(lines)) > budget:
            lines.pop()
        text = "\n".join(lines)
        if self.count_tokens(text) > budget:
            text = text[:budget]
        return text

    def _freshness(self, request: CompletionContext) -> tuple[int, int]:
        """What a remembered retrieval for this file must still match: the index's last change to
        another file, and the user's last edit or view in another file (recent regions feed
        retrieval). Typing in this file changes neither, though it ages the other files' recent
        regions: re-retrieved, the context of a body being typed drifted (in one replay, twice
        in four bodies), and the prompt was read again from its first chunk (~500 tokens, ~5 s)."""
        if self.index is None or request.path is None:
            return 0, 0
        rel = self.index.rel(request.path)
        if rel is None:
            return 0, 0
        return self.index.generation_excluding(rel), self.index.recent.last_elsewhere(rel)

    def _tokens_after(self, fixed: str, typed: str) -> list[int]:
        """The tokens of `fixed + typed`, where `fixed` ends with the FIM middle marker (a special
        token, so tokenizing stops and starts again there): `fixed`'s tokens are remembered, and
        a keystroke tokenizes only the body typed after the marker. Whether this tokenizer really
        starts again at the marker is checked once, on the first prompt."""
        if self._split_tokens is None:
            whole = self.runtime.tokenize(fixed + typed)
            head = self._memo("fixed", fixed, lambda: self.runtime.tokenize(fixed))
            self._split_tokens = whole[: len(head)] == head
            return whole
        if not self._split_tokens:
            return self.runtime.tokenize(fixed + typed)
        return self._memo("fixed", fixed, lambda: self.runtime.tokenize(fixed)) + self.runtime.tokenize(typed)

    def _tail_lines(self, window: str, budget: int) -> str:
        """The last whole lines of `window` within `budget` tokens (a growing window's visible part)."""
        lines = window.split("\n")
        start, total = len(lines), 0
        while start > 0:
            total += self._block_tokens(lines[start - 1]) + 1
            if total > budget:
                break
            start -= 1
        return "\n".join(lines[start:])

    def budgets(self, step: int | None = None) -> Budgets:
        """The full budgets, or those of growth step `step` (0: a cold prompt)."""
        full = Budgets(self.settings.prefix_tokens, self.settings.suffix_tokens, self.settings.context_tokens)
        if step is None:
            return full
        suffix_steps = 1 if full.suffix > COLD_SUFFIX_TOKENS else 0
        suffix = full.suffix if step >= suffix_steps else COLD_SUFFIX_TOKENS
        step -= suffix_steps
        prefix = min(full.prefix, COLD_PREFIX_TOKENS + max(0, step) * GROW_STEP_TOKENS)
        step -= -(-(full.prefix - COLD_PREFIX_TOKENS) // GROW_STEP_TOKENS)
        context = min(full.context, COLD_CONTEXT_TOKENS + max(0, step) * GROW_STEP_TOKENS)
        return Budgets(prefix, suffix, context)

    def _place(self, request: CompletionContext, cut: int) -> tuple[object, ...]:
        """What a grown prompt is valid for: the text before the middle. Not the text after the
        cursor: a cursor moved to another line of the same body (or a line the editor closed
        below it) changes only the suffix, which the prompt holds after the context and the lines
        above; started over, the prompt went back to the cold one, whose smaller window and
        context differ from the first chunk on, and the model read all of it again."""
        before = request.prefix[:cut]
        return (request.file, len(before), hash(before[-4000:]))

    def _grow_step(self, request: CompletionContext, cut: int) -> int:
        place = self._place(request, cut)
        if self._growth is None or self._growth.place != place:
            self._growth = _Growth(place)
        return self._growth.step

    def grow(self, request: CompletionContext, cancel: CancelToken | None = None) -> bool:
        """Read the next growth step of this place's prompt into the KV cache; False once full.

        Only the added text is read (Runtime reuses the cached prompt around an insertion). An
        insertion step counts once the read completes (a cancelled one leaves the cache as it
        was). The suffix grows in one step that counts at once: it comes right before the middle,
        so growing it re-reads the body typed so far, and cancelled half-way it leaves the cache
        cut at the suffix. Counted only once complete, the next request re-read the old suffix and
        the body, and the next step the new ones (in one 1.5B replay, 14 requests after Enter were
        superseded re-reading 130-600 tokens, ~3 s each); counted at once, the request after a
        cancelled step goes on from where it stopped.
        """
        cut = self._middle_start(request.prefix) if self._middle_layout else len(request.prefix)
        step = self._grow_step(request, cut)
        growth, full = self._growth, self.budgets()
        if self.budgets(step) == full:
            return False
        grown = self.build_prompt(request, step=step + 1)
        if growth is not None and self.budgets(step).suffix != self.budgets(step + 1).suffix:
            growth.step = step + 1
        self.runtime.prefill(grown.tokens, cancel)
        if growth is not None and self._growth is growth:
            growth.step = step + 1
        return self.budgets(step + 1) != full

    def same_place(self, made_at: CompletionContext, then: CompletionContext) -> bool:
        """Whether the prompt at `then` (text typed after `made_at`) starts its middle where the
        prompt at `made_at` does: everything before the middle (context, the lines above, the
        suffix) is then the same, and in the KV cache."""
        if not self._middle_layout:
            return True
        return self._middle_start(made_at.prefix) == self._middle_start(then.prefix)

    def _middle_start(self, prefix: str) -> int:
        """Where the middle starts: the enclosing function's body, in MIDDLE_SNAP_LINES steps
        while it is over MAX_MIDDLE_TOKENS, and at the latest the cursor line."""
        cut = prefix.rfind("\n") + 1
        if not self.settings.function_body_in_middle:
            return cut
        start = middle_start(prefix)
        if start >= cut:
            return start
        # Counted line by line (each line's count remembered): a keystroke in a long body counts
        # only its own line again, not the whole body (70-90 ms per key in a long Django test).
        # The sum is an upper bound (a new line and the next indentation are often one token), so
        # the middle still never exceeds the budget, and it is still a function of the text alone.
        counts = [self._block_tokens(line) + 1 for line in prefix[start:].split("\n")]
        total, dropped = sum(counts), 0
        while start < cut and total > MAX_MIDDLE_TOKENS:
            for _ in range(MIDDLE_SNAP_LINES):
                if start >= cut:
                    break
                total -= counts[dropped]
                dropped += 1
                start = prefix.find("\n", start, cut) + 1 or cut
        return start

    def retrieve(self, request: CompletionContext, budget: int | None = None) -> RetrievalResult | None:
        budget = self.settings.context_tokens if budget is None else budget
        if self._retriever is None or budget <= 0:
            return None
        result: RetrievalResult = self._retriever.retrieve(
            request.file,
            request.text,
            request.line,
            request.column,
            budget,
            self.count_tokens,
        )
        return result

    def build_prompt(
        self,
        request: CompletionContext,
        *,
        grow: bool = False,
        step: int | None = None,
        draft: str | None = None,
    ) -> Prompt:
        """The exact prompt the model will see for this cursor.

        `grow`: the prompt as far as this place's has grown (a new place starts cold: see
        `grow`); `step`: that of a given growth step. Otherwise the full budgets.
        `draft`: a first completion, read by retrieval as if typed at the cursor (RepoCoder's
        iteration: the names the model guessed find the code that uses or defines them); the
        prompt's own text is the request's.
        """
        start = time.perf_counter()
        language = request.language or language_for_path(request.file)
        prefix, suffix = request.prefix, request.suffix
        plan = plan_completion(prefix, suffix, language)
        cut = self._middle_start(prefix) if self._middle_layout else len(prefix)
        if grow and step is None:
            step = self._grow_step(request, cut)
        budgets = self.budgets(step)
        # Retrieval reads the text around the middle's start, not the cursor: it then stays the
        # same (and so does the prompt's head, in the KV cache) while the user types the body.
        # Retrieved at the full budget even for a smaller (growing) prompt, which takes the last
        # chunks of it (see _last_chunks): the context then only ever grows by an insertion.
        full_context = self.settings.context_tokens
        in_body = cut < prefix.rfind("\n") + 1
        if draft:
            retrieval = self.retrieve(request.forward(draft), full_context)
        elif in_body:
            anchored = replace(request, prefix=prefix[:cut])
            retrieval = self._memo(
                "retrieval",
                (request.file, anchored.prefix, request.suffix, full_context, *self._freshness(request)),
                lambda: self.retrieve(anchored, full_context),
            )
        else:
            retrieval = self.retrieve(request, full_context)
        retrieval_ms = (time.perf_counter() - start) * 1000
        chunks = list(retrieval.chunks) if retrieval else []
        if budgets.context < full_context:
            chunks = _last_chunks(chunks, budgets.context, self._block_tokens)
        template = self.runtime.template
        rel = _relative(request.file, self.root)
        repo = self.root.name if self.root else None
        context_text = template.render_context(
            [ContextFile(c.path, self._clean(c.text)) for c in chunks], repo=repo, path=rel
        )
        suffix_w = self._window_suffix(self._clean(suffix), budgets.suffix)
        head = self._clean(prefix[cut:]) if self._middle_layout else ""
        if self._middle_layout:
            # The function body typed so far goes after the FIM middle marker, as if the model had
            # written it (context/anchor.py): typing in a body then only appends to the prompt, so
            # every token before the body (context, lines above, the suffix) stays in the KV cache.
            above = self._above(self._clean(prefix[:cut]), language, budgets.prefix)
            # The head's unfinished end (a partial word, trailing spaces) is healed: the model
            # writes it again with its own tokens instead of continuing a split one.
            found = HEAL_TAIL.search(head)
            heal = found.group(0) if found and len(found.group(0)) <= MAX_HEAL_CHARS else ""
            fixed = context_text + template.render_fim(above, suffix_w)
            text = fixed + head[: len(head) - len(heal)]
            prefix_w = above + head
            tokens = self._tokens_after(fixed, text[len(fixed) :])
        else:
            heal = ""
            prefix_w = self._above(self._clean(prefix), language, budgets.prefix)
            text = context_text + template.render_fim(prefix_w, suffix_w)
            tokens = self.runtime.tokenize(text)
        return Prompt(
            text=text,
            tokens=tokens,
            heal=heal,
            plan=plan,
            prefix=prefix_w,
            suffix=suffix_w,
            context_text=context_text,
            chunks=chunks,
            retrieval=retrieval,
            retrieval_ms=retrieval_ms,
            assembly_ms=(time.perf_counter() - start) * 1000 - retrieval_ms,
        )

    def complete(
        self,
        request: CompletionContext,
        cancel: CancelToken | None = None,
        *,
        reset_cache: bool = False,
        on_partial: Callable[[str], None] | None = None,
        prompt: Prompt | None = None,
        max_tokens: int | None = None,
        limit: Callable[[str], bool] | None = None,
        first_line: bool = False,
        grow: bool = False,
        new_line: bool = False,
    ) -> CompletionResult:
        """Run one completion. Raises runtime.Cancelled when superseded.

        `max_tokens` lowers the mode's token budget; `limit(raw)` is asked after each piece and
        stops generation (reason "limit") when it returns False (a client's deadline or indent rule).
        `first_line`: where a block is expected, stop after its first line (reason "first-line"):
        what a typist reads in a pause, at a line's cost; the hot streak prepares the next one.
        `grow`: the prompt as far as it has grown in this place (see `grow`), not the full one.
        `new_line`: the answer is the line below the cursor's, the cursor being at a line's end (the
        hot streak, for the Enter to come): the model writes the new line and its indentation,
        which may go back a level (after `return`), and the text starts at that line's column 0.
        """
        start = time.perf_counter()
        prompt = prompt or self.build_prompt(request, grow=grow)
        run = partial(
            self._generate,
            request,
            cancel=cancel,
            max_tokens=max_tokens,
            limit=limit,
            first_line=first_line,
            new_line=new_line,
        )
        if not self.settings.refine:
            return run(prompt, start, reset_cache=reset_cache, on_partial=on_partial)
        # The draft is not streamed: the editor would show an answer about to be replaced.
        first = run(prompt, start, reset_cache=reset_cache, on_partial=None)
        again = self.refine_prompt(request, first.text, prompt, grow=grow)
        if again is None:
            if on_partial is not None and first.raw:
                on_partial(first.raw)
            return first
        second = run(again, time.perf_counter(), reset_cache=False, on_partial=on_partial)
        second.timings = {k: round(v + first.timings.get(k, 0.0), 2) for k, v in second.timings.items()}
        second.tokens = {**second.tokens, "prompt": second.tokens["prompt"] + first.tokens["prompt"]}
        return second

    def refine_prompt(
        self, request: CompletionContext, draft: str | None, first: Prompt, *, grow: bool = False
    ) -> Prompt | None:
        """The second pass's prompt: retrieval reads `draft` (the first answer) as if typed at the
        cursor. None when there is no draft or the prompt comes out the same (greedy decoding would
        answer the same)."""
        if not draft or not draft.strip() or self._retriever is None:
            return None
        again = self.build_prompt(request, grow=grow, draft=draft)
        return None if again.tokens == first.tokens else again

    def _generate(
        self,
        request: CompletionContext,
        prompt: Prompt,
        start: float,
        *,
        cancel: CancelToken | None,
        reset_cache: bool,
        on_partial: Callable[[str], None] | None,
        max_tokens: int | None,
        limit: Callable[[str], bool] | None,
        first_line: bool,
        new_line: bool,
    ) -> CompletionResult:
        """One generation for `prompt` (see `complete`); `start`: when the request began."""
        if reset_cache:
            self.runtime.reset()
        plan = prompt.plan
        if new_line:
            # Judged (block or line, where a block ends) as at the new line's start, which is where
            # the text returned starts.
            language = request.language or language_for_path(request.file)
            plan = plan_completion(request.prefix + "\n", request.suffix, language)
        filt = StreamFilter(plan)
        budget = self.settings.max_tokens_line if plan.mode is Mode.LINE else self.settings.max_tokens_block
        one_line = first_line and plan.mode is Mode.BLOCK
        if one_line:
            budget = min(budget, self.settings.max_tokens_line)
        if max_tokens is not None:
            budget = min(budget, max_tokens)
        limited = ""

        def on_text(piece: str) -> bool:
            nonlocal limited
            keep_going = filt.feed(piece)
            if keep_going and one_line:
                end = _first_line_end(filt.raw)
                if end is not None:
                    filt.raw = filt.raw[:end]
                    limited = "first-line"
                    keep_going = False
            if on_partial is not None:
                on_partial(filt.raw)
            if keep_going and limit is not None and not limit(filt.raw):
                limited = "limit"
                return False
            return keep_going

        # At a block header's end the answer must start on the next line. Left free, the 1.5B wrote
        # on the header's line first at all 30 headers sampled from httpx, werkzeug and jinja2
        # bodies: a comment (`  # pragma: no cover`, `  # type: ignore`) 26 times, nothing 4 times
        # (bench/header_end.py; forced to a new line, 15 answers had the body's first line exactly).
        # The model writes the new line with its own token (new line and indentation are one), as a
        # healed tail; a backend that cannot constrain its first tokens (a remote server) and
        # answers on the header's line gets its answer ended by the block rule instead of shown.
        # The same forced new line starts a `new_line` answer, which is not shown it (its text
        # starts below it).
        lead = "\n" if prompt.plan.opens_block or new_line else ""
        if lead and not new_line:
            filt.feed(lead)
        stats: GenerationStats = self.runtime.generate(
            prompt.tokens, max_tokens=budget, on_text=on_text, cancel=cancel, heal=prompt.heal + lead
        )
        outcome: Outcome = filt.finish(cut_off=stats.stop_reason == "max-tokens")
        total_ms = (time.perf_counter() - start) * 1000
        if outcome.suppressed:
            log.info("suppressed completion at %s:%d: %s", request.file, request.line + 1, outcome.reason)
        return CompletionResult(
            text=outcome.text,
            reason=outcome.reason
            if outcome.suppressed
            else (limited or str(filt.stop_reason or stats.stop_reason)),
            mode=str(prompt.plan.mode),
            model=self.model_name,
            timings={
                "retrieval_ms": round(prompt.retrieval_ms, 2),
                "assembly_ms": round(prompt.assembly_ms, 2),
                "prompt_ms": round(stats.prompt_ms, 1),
                "generation_ms": round(stats.generation_ms, 1),
                "total_ms": round(total_ms, 1),
            },
            tokens={
                "prompt": stats.prompt_tokens,
                "reused": stats.reused_tokens,
                "generated": stats.generated_tokens,
                "context": sum(c.tokens for c in prompt.chunks),
            },
            chunks=prompt.chunks,
            raw=filt.raw,
            prompt=prompt,
            confidence=stats.confidence(),
        )
