"""Chat prompts (Qwen ChatML template), one blocking generation helper, and code extraction.

The code actions ask the instruct model for whole functions or test files rather than a FIM
middle. Everything here is synchronous: the action pipelines run in a thread and reach the model
either directly (tests, CLI) or through the server's single ModelWorker (`worker_generator`), so
the event loop never waits on the model.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol, TypeVar

from server.model.runtime import Backend, Cancelled, CancelToken
from server.model.worker import ModelWorker

log = logging.getLogger(__name__)

Role = Literal["system", "user", "assistant"]
T = TypeVar("T")

IM_START = "<|im_start|>"
IM_END = "<|im_end|>"
# A job cancelled because an inline completion superseded it is queued again this many times:
# completions are short, so a few retries cover a burst of typing without starving forever.
SUPERSEDED_RETRIES = 30
# Pause before a retry, so the completion that superseded us gets the model first.
SUPERSEDED_RETRY_DELAY_S = 0.05


@dataclass(frozen=True)
class Message:
    role: Role
    content: str


def render_chat(messages: Sequence[Message], *, open_assistant: bool = True) -> str:
    """ChatML as Qwen2.5 expects it; ends with an open assistant turn for generation."""
    out = [f"{IM_START}{m.role}\n{_scrub(m.content)}{IM_END}\n" for m in messages]
    if open_assistant:
        out.append(f"{IM_START}assistant\n")
    return "".join(out)


def _scrub(text: str) -> str:
    # User code must not be able to close a turn or open a new one.
    return text.replace(IM_START, "").replace(IM_END, "")


StopWhen = Callable[[str], bool]
"""Sees the text generated so far; True ends generation (saves the tokens a caller would discard)."""


class Generate(Protocol):
    """Prompt text in, generated text out (greedy). Raises Cancelled when the action is cancelled."""

    def __call__(self, prompt: str, *, max_tokens: int, stop_when: StopWhen | None = None) -> str: ...


class FirstTokens(Protocol):
    """Prompt text in: the likeliest first tokens of its answer, most likely first, as (text,
    probability) (Backend.first_tokens). Appending one to the prompt and generating gives the
    answer that starts with it, the prompt itself still in the KV cache."""

    def __call__(self, prompt: str, k: int) -> list[tuple[str, float]]: ...


# A greedy small model can fall into one character repeated on one line (`def test_000…` for 600
# tokens: fontTools' floatToFixedToStr, bench actions-33); a run this long ends the answer, as no
# code means it. Characters rulers are drawn with do not count. Checked every few pieces.
DEGENERATE_RUN = 40
_DEGENERATE = re.compile(rf"([^\s#=*~-])\1{{{DEGENERATE_RUN - 1},}}")
RUNAWAY_CHECK_PIECES = 8


def runs_away(line: str) -> bool:
    """Whether a line being generated has fallen into one character repeated."""
    return _DEGENERATE.search(line) is not None


def _generate_once(
    runtime: Backend, prompt: str, max_tokens: int, cancel: CancelToken, stop_when: StopWhen | None = None
) -> str:
    pieces: list[str] = []

    def on_text(piece: str) -> bool:
        pieces.append(piece)
        if "\n" not in piece:
            if len(pieces) % RUNAWAY_CHECK_PIECES:
                return True
            return not runs_away("".join(pieces).rsplit("\n", 1)[-1])
        return stop_when is None or not stop_when("".join(pieces))

    tokens = runtime.tokenize(prompt)
    room = runtime.n_ctx - len(tokens) - 1
    if room <= 0:
        raise ValueError(f"prompt of {len(tokens)} tokens leaves no room in the context window")
    start = time.perf_counter()
    stats = runtime.generate(tokens, max_tokens=min(max_tokens, room), on_text=on_text, cancel=cancel)
    log.info(
        "chat generation: %d prompt tokens (%d reused), %d generated in %.0f ms (%s)",
        stats.prompt_tokens,
        stats.reused_tokens,
        stats.generated_tokens,
        (time.perf_counter() - start) * 1000,
        stats.stop_reason,
    )
    return "".join(pieces)


def runtime_generator(runtime: Backend, cancel: CancelToken | None = None) -> Generate:
    """Generate on this thread, directly on the runtime (tests, command line)."""
    token = cancel or CancelToken()

    def generate(prompt: str, *, max_tokens: int, stop_when: StopWhen | None = None) -> str:
        return _generate_once(runtime, prompt, max_tokens, token, stop_when)

    return generate


def worker_generator(worker: ModelWorker, runtime: Backend, cancel: CancelToken) -> Generate:
    """Generate through the server's single model worker, blocking the calling (non-loop) thread.

    `cancel` is the action's own token (user cancellation). Each job gets a fresh token that the
    worker may cancel when an inline completion supersedes it; such a job is queued again, since
    an explicit code action should yield to typing, not die of it.
    """

    def generate(prompt: str, *, max_tokens: int, stop_when: StopWhen | None = None) -> str:
        return _on_worker(
            worker, cancel, lambda tok: _generate_once(runtime, prompt, max_tokens, tok, stop_when)
        )

    return generate


def runtime_first_tokens(runtime: Backend, cancel: CancelToken | None = None) -> FirstTokens:
    """FirstTokens on this thread, directly on the runtime (tests, command line)."""
    token = cancel or CancelToken()
    return lambda prompt, k: runtime.first_tokens(runtime.tokenize(prompt), k, token)


def worker_first_tokens(worker: ModelWorker, runtime: Backend, cancel: CancelToken) -> FirstTokens:
    """FirstTokens through the server's model worker, yielding to completions like worker_generator."""
    return lambda prompt, k: _on_worker(
        worker, cancel, lambda tok: runtime.first_tokens(runtime.tokenize(prompt), k, tok)
    )


def _on_worker(worker: ModelWorker, cancel: CancelToken, job: Callable[[CancelToken], T]) -> T:
    """Run `job` on the model worker; queued again when a completion supersedes it."""
    for _ in range(SUPERSEDED_RETRIES + 1):
        cancel.check()
        job_token = CancelToken()
        future, _ = worker.submit(lambda tok: job(_Either(cancel, tok)), supersede=False, token=job_token)
        try:
            result: T = future.result()
            return result
        except Cancelled:
            if cancel.cancelled:
                raise
            log.info("code action's model request superseded by a completion; queueing it again")
            time.sleep(SUPERSEDED_RETRY_DELAY_S)
    raise Cancelled("superseded too often")


class _Either(CancelToken):
    """Cancelled when either the action or the worker cancels."""

    def __init__(self, a: CancelToken, b: CancelToken) -> None:
        super().__init__()
        self._a, self._b = a, b

    @property
    def cancelled(self) -> bool:
        return self._a.cancelled or self._b.cancelled

    def check(self) -> None:
        self._a.check()
        self._b.check()


_DOUBLED_FENCE = re.compile(r"```[\w+-]*[ \t]*\n[ \t]*(```[\w+-]*[ \t]*\n)")
# A block closes at a fence that starts or ends a line: backticks inside the code (a docstring's
# ``\``` `` in pydash's `escape`) are not its end.
_FENCE = re.compile(r"```[ \t]*([\w+-]*)[^\n]*\n(.*?)(?:^[ \t]*```|```[ \t]*$|\Z)", re.DOTALL | re.MULTILINE)


def extract_code(text: str, language: str = "python") -> str:
    """The code in a chat answer: fenced blocks of the language (joined), else the whole answer.

    Small models wrap code in prose and fences, sometimes leave the last fence open (cut by
    max_tokens), or answer with bare code; all three come back as code.
    """
    aliases = {language, language[:2], "", "py" if language == "python" else language}
    # A model that repeats the prefilled opening fence would otherwise yield an empty block.
    text = _DOUBLED_FENCE.sub(r"\1", text)
    blocks = [m.group(2) for m in _FENCE.finditer(text) if m.group(1).lower() in aliases]
    if not blocks:
        blocks = [m.group(2) for m in _FENCE.finditer(text)]
    if blocks:
        return "\n\n".join(b.strip("\n") for b in blocks if b.strip()) + "\n"
    return text.strip("\n") + "\n"


def chat(
    generate: Generate,
    system: str,
    user: str,
    *,
    max_tokens: int,
    history: Sequence[Message] = (),
) -> str:
    """One chat turn; returns the raw answer (without the end token)."""
    messages = [Message("system", system), *history, Message("user", user)]
    return generate(render_chat(messages), max_tokens=max_tokens)


def closing_fence(text: str) -> bool:
    """StopWhen for answers whose opening fence was prefilled: stop at the closing one."""
    complete = text.split("\n")[:-1]
    return any(line.strip().startswith("```") for line in complete)


ProgressFn = Callable[[str, int], None]
"""Reports (message, percentage 0-100) while an action runs."""


def no_progress(message: str, percentage: int) -> None:
    """A ProgressFn that discards reports."""


__all__ = [
    "FirstTokens",
    "Generate",
    "Message",
    "ProgressFn",
    "StopWhen",
    "chat",
    "closing_fence",
    "extract_code",
    "no_progress",
    "render_chat",
    "runtime_first_tokens",
    "runtime_generator",
    "worker_first_tokens",
    "worker_generator",
]
