"""The model seam: the Backend protocol every door uses, the per-token Engine, and the generation loop.

A Backend is "tokenize, count, stream a completion for this prompt, prefill, reset, cancel":
`Runtime` implements it in-process over an Engine (llama.cpp in the model process, or a scripted
fake in protocol tests); `server.model.process.ProcessRuntime` implements it across a process
boundary, so a native crash in llama.cpp never takes the language server with it.

The loop owns what the low-level API leaves to us: reusing the KV cache for the longest common
token prefix, evaluating the prompt in chunks so a newer request can cancel a long prompt
between chunks, greedy decoding token by token, stopping on every end token of the vocabulary,
and handing each decoded piece to a callback that can stop generation early (post-processing).
"""

from __future__ import annotations

import codecs
import logging
import math
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from server.model.registry import ModelSpec
from server.model.templates import FimTemplate

log = logging.getLogger(__name__)

# Prompt tokens evaluated per llama_decode call: the cancellation granularity for long prompts.
# 128 keeps a stale 1,500-token prompt from holding the model more than ~0.6 s (1.5B, 2 cores).
PROMPT_CHUNK_TOKENS = 128
# Reuse a run of cached tokens that moved (text deleted or changed before it) by shifting its KV
# entries instead of re-reading it, when it is at least this long: shorter runs are not worth the
# approximation. llama.vim's recommended `--cache-reuse` is 256 for whole-file chunks; ours are
# smaller pieces of one prompt (a context chunk, a prefix window that lost its first lines).
MIN_REUSE_TOKENS = 64

# A run of cached tokens is also reused after text inserted before it (shifted up, the new text
# read in place), but only when the insertion is at least this many tokens before the prompt's
# end: the entries near the cursor then only lack text far above them (older lines of a growing
# prefix window), as with llama.cpp's context shift. Nearer insertions are read again: measured
# with a changed token right before the suffix, the reused suffix still answered for the old text.
MIN_INSERT_DISTANCE = 256
# ... and at most this long (a longer one is a different prompt, not a grown one).
MAX_INSERT_TOKENS = 1024
# The cached run may begin this many tokens after the insertion point: the tokenizer joins text
# across the seam differently (Qwen writes "\n" + indentation as one token, so the old first line
# of a growing prefix window starts with other tokens once a line is put before it). Without this,
# measured on the replay's functions, 8 of 46 growth steps re-read the whole prompt (17-38 s each
# for the 1.5B on 2 cores) instead of 32 tokens (~1 s).
MAX_SEAM_TOKENS = 4

# A read longer than this is logged (at DEBUG) with the text where the prompt left the cache.
SMALL_READ_TOKENS = 16

# Context window we allocate; prompts are budgeted far below it (a cold 1.5B read of 4k tokens is ~40 s).
DEFAULT_N_CTX = 4096


def model_threads(setting: int = 0, cpus: int | None = None) -> int:
    """Threads for llama.cpp: the setting, or (0) one fewer than the CPUs, at least one.

    llama.cpp's threads wait for each other at every layer; when another process (the editor, a
    browser, a build) takes a core, one thread per core stalls the whole batch. Measured on 2 busy
    cores with the 0.5B: a cold 844-token prompt took 54 s with 2 threads and 17 s with 1.
    """
    if setting > 0:
        return setting
    return max(1, (cpus if cpus is not None else os.cpu_count() or 1) - 1)


class Cancelled(Exception):
    """The request was superseded or cancelled; the model is free again. `progress` says how far a
    generation had got (for the log: what a keystroke's cancellation cost)."""

    def __init__(self, reason: str = "cancelled", progress: str = "") -> None:
        super().__init__(reason)
        self.progress = progress


class CancelToken:
    """Set by whoever supersedes a request; checked between prompt chunks and between tokens, and
    by a model process inside a chunk (its abort flag) unless `whole_chunks`: a job whose read is
    worth nothing unless it completes, which is short, and which may finish its chunk."""

    def __init__(self, *, whole_chunks: bool = False) -> None:
        self._event = threading.Event()
        self.reason = "cancelled"
        self.whole_chunks = whole_chunks

    def cancel(self, reason: str = "cancelled") -> None:
        self.reason = reason
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def check(self) -> None:
        if self._event.is_set():
            raise Cancelled(self.reason)


class Engine(Protocol):
    """What the generation loop needs from a model."""

    name: str
    template: FimTemplate
    stop_ids: frozenset[int]
    n_ctx: int

    def tokenize(self, text: str) -> list[int]:
        """Tokens of text, control strings (FIM markers) parsed as special tokens, no BOS."""
        ...

    def token_bytes(self, token: int) -> bytes: ...

    def cached_tokens(self) -> Sequence[int]:
        """Tokens whose KV entries are currently valid, in order."""
        ...

    def truncate(self, n: int) -> None:
        """Keep only the first n cached tokens."""
        ...

    def move(self, keep: int, start: int, end: int) -> None:
        """Keep cached [0, keep), shift the cached run [start, end) down to follow it, drop the rest.

        The shifted entries keep what they attended to before (an approximation llama.cpp's
        server makes with --cache-reuse as well).
        """
        ...

    def insert(self, at: int, tokens: Sequence[int], check: Callable[[], None] | None = None) -> None:
        """Evaluate `tokens` at cached position `at`, shifting the cached tokens from `at` on after
        them; their entries keep what they attended to before (they did not see `tokens`).
        `check()` runs between chunks; when it raises, the cache is left unchanged."""
        ...

    def eval(self, tokens: Sequence[int]) -> None:
        """Append tokens to the KV cache and compute logits for the last one."""
        ...

    def argmax(self) -> int:
        """The greedy next token after the last eval."""
        ...

    def logprob(self, token: int) -> float:
        """The natural-log probability of `token` after the last eval (the model's confidence)."""
        ...

    def argmax_among(self, tokens: Sequence[int]) -> int:
        """The most likely of `tokens` after the last eval."""
        ...

    def tokens_matching(self, text: bytes) -> Sequence[int]:
        """Tokens whose bytes start with `text` or are a non-empty start of it (token healing)."""
        ...

    def top_tokens(self, k: int) -> list[int]:
        """The `k` likeliest next tokens after the last eval, most likely first."""
        ...


@dataclass
class GenerationStats:
    prompt_tokens: int = 0
    reused_tokens: int = 0
    generated_tokens: int = 0
    prompt_ms: float = 0.0
    generation_ms: float = 0.0
    stop_reason: str = ""
    # Log probability of each generated token, in order: the model's confidence in its answer.
    logprobs: list[float] = field(default_factory=list)

    def confidence(self, tokens: int | None = None) -> float:
        """Geometric-mean probability of the first `tokens` generated tokens (all: None); 1.0 if none."""
        chosen = self.logprobs if tokens is None else self.logprobs[:tokens]
        return math.exp(sum(chosen) / len(chosen)) if chosen else 1.0

    def as_dict(self) -> dict[str, float | int | str]:
        return {
            "confidence": round(self.confidence(), 4),
            "prompt_tokens": self.prompt_tokens,
            "reused_tokens": self.reused_tokens,
            "generated_tokens": self.generated_tokens,
            "prompt_ms": round(self.prompt_ms, 1),
            "generation_ms": round(self.generation_ms, 1),
            "stop_reason": self.stop_reason,
        }


OnText = Callable[[str], bool]
"""Receives each decoded piece of text; returns False to stop generating."""


def _word_byte(b: int) -> bool:
    """A byte of an identifier (ASCII letters, digits, underscore; any byte of a UTF-8 sequence)."""
    return b >= 0x80 or b == 0x5F or 0x30 <= b <= 0x39 or 0x41 <= b <= 0x5A or 0x61 <= b <= 0x7A


def common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


# Best tokens looked at for a line of code's first token after a healed new line (see generate):
# the best that does not start another line is almost always among the first few.
CODE_LINE_CANDIDATES = 16
# Extra candidates `first_tokens` looks at, for those it drops (end tokens, split characters).
FIRST_TOKENS_SLACK = 4


class Backend(Protocol):
    """What completion, chat and code actions need from a model, wherever it runs."""

    spec: ModelSpec | None

    @property
    def name(self) -> str: ...

    @property
    def template(self) -> FimTemplate: ...

    @property
    def n_ctx(self) -> int: ...

    def tokenize(self, text: str) -> list[int]: ...

    def count_tokens(self, text: str) -> int: ...

    def reset(self) -> None:
        """Forget the KV cache (evaluations do this per case for reproducibility)."""
        ...

    def prefill(self, tokens: Sequence[int], cancel: CancelToken | None = None) -> GenerationStats:
        """Evaluate a prompt without generating, so the next request on it starts warm."""
        ...

    def generate(
        self,
        prompt: Sequence[int],
        *,
        max_tokens: int,
        on_text: OnText,
        cancel: CancelToken | None = None,
        heal: str = "",
    ) -> GenerationStats:
        """Greedy generation; on_text may stop it. Raises Cancelled when `cancel` fires.

        The output begins with `heal` (not shown to on_text); see Runtime.generate.
        """
        ...

    def first_tokens(
        self, prompt: Sequence[int], k: int, cancel: CancelToken | None = None
    ) -> list[tuple[str, float]]:
        """The `k` likeliest first tokens of the answer to `prompt`, most likely first, as (text,
        probability); end tokens and tokens that are not whole UTF-8 text left out. The prompt
        stays in the KV cache, so generating from it (or from it plus one of these) next reads
        nothing again. A backend that cannot tell returns []."""
        ...


class Runtime:
    """A Backend over one in-process engine. Not thread-safe: the ModelWorker serialises access."""

    def __init__(self, engine: Engine, spec: ModelSpec | None = None, *, reuse_chunks: bool = True) -> None:
        self.engine = engine
        self.spec = spec
        self.reuse_chunks = reuse_chunks
        self.lock = threading.Lock()
        self._reading_from = 0  # the cached tokens the prompt being read started from

    @property
    def name(self) -> str:
        return self.spec.name if self.spec else self.engine.name

    @property
    def template(self) -> FimTemplate:
        return self.engine.template

    @property
    def n_ctx(self) -> int:
        return self.engine.n_ctx

    def tokenize(self, text: str) -> list[int]:
        return self.engine.tokenize(text)

    def count_tokens(self, text: str) -> int:
        return len(self.engine.tokenize(text)) if text else 0

    def reset(self) -> None:
        """Forget the KV cache (evaluations do this per case for reproducibility)."""
        self.engine.truncate(0)

    def prefill(self, tokens: Sequence[int], cancel: CancelToken | None = None) -> GenerationStats:
        """Evaluate a prompt without generating, so the next request on it starts warm."""
        tokens = self._realign(tokens)
        stats = GenerationStats(prompt_tokens=len(tokens))
        start = time.perf_counter()
        stats.reused_tokens = self._ingest(tokens, cancel or CancelToken(), keep_last=False)
        stats.prompt_ms = (time.perf_counter() - start) * 1000
        stats.stop_reason = "prefill"
        return stats

    def _realign(self, tokens: Sequence[int]) -> Sequence[int]:
        """`tokens` with the cache's own tokens where the cache holds the same text differently split.

        After the user typed what the model wrote (typing through, a suggestion accepted) the cache
        holds the model's tokens for that text, and the prompt's tokenization of it often differs
        from the first token of the line on (`"    " + "for"` against `"   " + " for"`): the whole
        line would be read again (~1 s for the 1.5B on 2 cores) where the new text is a few tokens.
        The model's own split of the text is kept, and only what follows is tokenized afresh.
        """
        engine = self.engine
        cached = engine.cached_tokens()
        same = common_prefix(cached, tokens)
        if same == len(tokens) or same == len(cached):
            return tokens
        pieces = [engine.token_bytes(t) for t in tokens[same:]]
        if not all(pieces):
            return tokens  # FIM markers (no bytes) after the split: the text is not all that differs
        new = b"".join(pieces)
        at = 0
        ends: list[tuple[int, int]] = []  # (tokens kept, bytes covered) where the rest can start
        for kept, token in enumerate(cached[same:], 1):
            piece = engine.token_bytes(token)
            if not piece or new[at : at + len(piece)] != piece:
                break  # a control token (no bytes) or other text
            at += len(piece)
            if at == len(new) or not (_word_byte(new[at - 1]) and _word_byte(new[at])):
                ends.append((kept, at))
        # The rest is tokenized from a word's start, never from inside one (`" item" + "s"`).
        kept, at = ends[-1] if ends else (0, 0)
        if kept == 0:
            return tokens  # nothing in common
        try:
            rest = new[at:].decode("utf-8")
        except UnicodeDecodeError:
            return tokens  # the cache's split falls inside a character
        realigned = [*tokens[:same], *cached[same : same + kept], *(engine.tokenize(rest) if rest else ())]
        return realigned if len(realigned) - same - kept < len(tokens) - same else tokens

    def _text(self, tokens: Sequence[int]) -> str:
        return b"".join(self.engine.token_bytes(t) or b"<special>" for t in tokens).decode(errors="replace")

    def _ingest(self, tokens: Sequence[int], cancel: CancelToken, *, keep_last: bool = True) -> int:
        """Make the KV cache hold `tokens`, reusing the longest common prefix; returns tokens reused."""
        engine = self.engine
        if len(tokens) >= engine.n_ctx:
            raise ValueError(f"prompt of {len(tokens)} tokens exceeds the context window of {engine.n_ctx}")
        cached = engine.cached_tokens()
        reused = self._reading_from = common_prefix(cached, tokens)
        read = 0
        run = _moved_run(cached, tokens, reused) if self.reuse_chunks else None
        inserted = _inserted_run(cached, tokens, reused) if self.reuse_chunks and run is None else None
        if log.isEnabledFor(logging.DEBUG) and len(tokens) - reused > SMALL_READ_TOKENS:
            log.debug(
                "ingest: %d cached, %d in the prompt, the same up to %d (moved %s, inserted %s): %r | %r",
                len(cached),
                len(tokens),
                reused,
                run,
                inserted,
                self._text(cached[max(0, reused - 8) : reused + 12]),
                self._text(tokens[max(0, reused - 8) : reused + 12]),
            )
        if run is not None:
            # Text deleted before a long cached run: shift the run into place instead of reading it
            # (and read the few tokens at the seam that the tokenizer now writes differently).
            seam, start, length = run
            engine.move(reused, start, start + length)
            if seam:
                engine.insert(reused, tokens[reused : reused + seam], cancel.check)
                read = seam
            reused += seam + length
        elif inserted is not None:
            # Text inserted far before a long cached run: read only the new text, in place (and the
            # few tokens at the seam that the tokenizer now writes differently).
            at, start, length = inserted
            if start > reused:
                engine.move(reused, start, len(cached))
            engine.insert(reused, tokens[reused:at], cancel.check)
            read = at - reused
            reused = at + length
        if keep_last and reused == len(tokens):
            # Logits of the last prompt token are needed to sample: re-evaluate it.
            reused -= 1
        engine.truncate(reused)
        pos = self._reading_from = reused
        reused -= read  # the inserted text was read, not reused
        while pos < len(tokens):
            cancel.check()
            end = min(len(tokens), pos + PROMPT_CHUNK_TOKENS)
            engine.eval(tokens[pos:end])
            pos = end
        return max(reused, 0)

    def generate(
        self,
        prompt: Sequence[int],
        *,
        max_tokens: int,
        on_text: OnText,
        cancel: CancelToken | None = None,
        heal: str = "",
    ) -> GenerationStats:
        """Greedy generation. Raises Cancelled when `cancel` fires; stats say why it stopped.

        `heal`: text the output must begin with, left out of the prompt so that the model writes
        it with its own tokens (a prompt ending in `x = ` or `retu` splits a token the model would
        not split); the first tokens are chosen among those consistent with it, and on_text sees
        only what follows it. A heal that ends in a new line asks for the next line of code (a
        header's body, the hot streak's line): that line is not a blank one.
        """
        cancel = cancel or CancelToken()
        pending = heal.encode("utf-8")
        with self.lock:
            prompt = self._realign(prompt)
            stats = GenerationStats(prompt_tokens=len(prompt))
            start = time.perf_counter()
            try:
                return self._generate(prompt, max_tokens, on_text, cancel, pending, stats, start)
            except Cancelled as exc:
                ms = (time.perf_counter() - start) * 1000
                if stats.prompt_ms:
                    exc.progress = (
                        f"after {ms:.0f} ms: prompt of {len(prompt)} tokens read in {stats.prompt_ms:.0f} ms "
                        f"({stats.reused_tokens} cached), {stats.generated_tokens} tokens generated"
                    )
                else:
                    exc.progress = (
                        f"after {ms:.0f} ms reading a prompt of {len(prompt)} tokens "
                        f"({self._reading_from} cached)"
                    )
                raise

    def first_tokens(
        self, prompt: Sequence[int], k: int, cancel: CancelToken | None = None
    ) -> list[tuple[str, float]]:
        with self.lock:
            prompt = self._realign(prompt)
            self._ingest(prompt, cancel or CancelToken())
            engine = self.engine
            out = []
            # A few more than asked: end tokens and partial characters are dropped.
            for token in engine.top_tokens(k + FIRST_TOKENS_SLACK):
                if token in engine.stop_ids:
                    continue
                try:
                    text = engine.token_bytes(token).decode("utf-8")
                except UnicodeDecodeError:
                    continue
                if text:
                    out.append((text, math.exp(engine.logprob(token))))
            return out[:k]

    def _generate(
        self,
        prompt: Sequence[int],
        max_tokens: int,
        on_text: OnText,
        cancel: CancelToken,
        pending: bytes,
        stats: GenerationStats,
        start: float,
    ) -> GenerationStats:
        """generate's work, under the lock; `stats` shows how far it got when Cancelled."""
        engine = self.engine
        stats.reused_tokens = self._ingest(prompt, cancel)
        stats.prompt_ms = (time.perf_counter() - start) * 1000
        gen_start = time.perf_counter()
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        stats.stop_reason = "max-tokens"
        room = engine.n_ctx - len(prompt) - 1
        # Left free after the end of a function's last line typed so far, the 1.5B wrote blank lines
        # and ended (the body done) where, at the indentation the editor gives, it wrote the line
        # the user typed next (`return tree` after a loop, werkzeug's _prefix_names).
        code_line = pending.endswith(b"\n")
        for _ in range(min(max_tokens + len(pending), room)):
            cancel.check()
            if code_line:
                token = self._code_line_token(pending)
            else:
                token = engine.argmax_among(engine.tokens_matching(pending)) if pending else engine.argmax()
            if token in engine.stop_ids:
                stats.stop_reason = "end-token"
                break
            stats.generated_tokens += 1
            stats.logprobs.append(engine.logprob(token))
            engine.eval([token])
            data = engine.token_bytes(token)
            if pending:
                data, pending = data[len(pending) :], pending[len(data) :]
            if data:
                code_line = False
            piece = decoder.decode(data)
            if piece and not on_text(piece):
                stats.stop_reason = "postprocess"
                break
        else:
            tail = decoder.decode(b"", final=True)
            if tail:
                on_text(tail)
        stats.generation_ms = (time.perf_counter() - gen_start) * 1000
        return stats

    def _code_line_token(self, pending: bytes) -> int:
        """The best token that goes on with `pending` (a heal ending in a new line; empty once
        read) without starting another line (a blank one)."""
        engine = self.engine
        if pending:
            matching = engine.tokens_matching(pending)
            candidates = [t for t in matching if not _starts_line(engine.token_bytes(t)[len(pending) :])]
            return engine.argmax_among(candidates) if candidates else engine.argmax()
        best = engine.argmax()
        if not _starts_line(engine.token_bytes(best)):
            return best
        for token in engine.top_tokens(CODE_LINE_CANDIDATES):
            if not _starts_line(engine.token_bytes(token)):
                return token
        return best


def _starts_line(data: bytes) -> bool:
    return data[:1] in (b"\n", b"\r")


# Runs are found by windows of this many tokens: long enough to be unlikely by chance.
RUN_WINDOW_TOKENS = 16


def _inserted_run(cached: Sequence[int], tokens: Sequence[int], reused: int) -> tuple[int, int, int] | None:
    """Where the cache's tokens after the common prefix (give or take MAX_SEAM_TOKENS at the seam)
    reappear later in the prompt, and for how long: (prompt position, cache position, length) of a
    run of at least MIN_REUSE_TOKENS after text inserted at `reused`, when that is at least
    MIN_INSERT_DISTANCE tokens before the prompt's end; else None."""
    if len(tokens) - reused < MIN_INSERT_DISTANCE:
        return None
    last = min(len(tokens) - MIN_REUSE_TOKENS, reused + MAX_INSERT_TOKENS)
    for start in range(reused, reused + MAX_SEAM_TOKENS + 1):
        found = _first_run(cached, start, tokens, range(reused + 1, last + 1))
        if found is not None:
            return found[0], start, found[1]
    return None


def _moved_run(cached: Sequence[int], tokens: Sequence[int], reused: int) -> tuple[int, int, int] | None:
    """Where the prompt's tokens after the common prefix (give or take MAX_SEAM_TOKENS at the seam)
    reappear later in the cache, and for how long: (seam tokens to read first, cache position,
    length) of a run of at least MIN_REUSE_TOKENS, or None.

    Only text deleted before the run (a context chunk dropped, the prefix window's first lines
    gone) is worked around, as llama-server's --cache-reuse does. Text inserted or changed right
    before a run is not: the run's entries were computed against the old text, and measured on a
    FIM prompt, a suffix reused after one changed token before it still answered for the old
    text (`math.` -> `sqrt`) even with the last 64 prompt tokens read again. The seam's few
    tokens (the tokenizer joins "\n" + indentation differently once the lines above are gone) are
    such a change, so they are allowed only MIN_INSERT_DISTANCE tokens before the prompt's end,
    as for an insertion: a growth step cancelled after its insertion left the cache holding the
    grown prompt, and the smaller one, which lacks the grown lines, was read again from them on.
    """
    seams = MAX_SEAM_TOKENS if len(tokens) - reused >= MIN_INSERT_DISTANCE else 0
    for seam in range(seams + 1):
        if len(tokens) - reused - seam < MIN_REUSE_TOKENS:
            return None
        found = _first_run(
            tokens, reused + seam, cached, range(reused + 1, len(cached) - MIN_REUSE_TOKENS + 1)
        )
        if found is not None:
            return seam, found[0], found[1]
    return None


def _first_run(
    source: Sequence[int], at: int, target: Sequence[int], positions: range
) -> tuple[int, int] | None:
    """The first of `positions` in `target` where a run of at least MIN_REUSE_TOKENS tokens equal
    to `source` from `at` on begins, and its length; None when there is none (or `source` has
    fewer than RUN_WINDOW_TOKENS tokens left)."""
    head = tuple(source[at : at + RUN_WINDOW_TOKENS])
    if len(head) < RUN_WINDOW_TOKENS:
        return None
    for k in positions:
        if tuple(target[k : k + RUN_WINDOW_TOKENS]) != head:
            continue
        n = _equal_run(source, at, target, k)
        if n >= MIN_REUSE_TOKENS:
            return k, n
    return None


def _equal_run(a: Sequence[int], at: int, b: Sequence[int], start: int) -> int:
    """How many tokens match from a[at] and b[start] on."""
    n, limit = 0, min(len(a) - at, len(b) - start)
    while n < limit and a[at + n] == b[start + n]:
        n += 1
    return n
