"""The generation loop and the completion pipeline, on the deterministic fake engine."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from server.completion import PREFIX_SNAP_LINES, Completer, CompletionRequest, CompletionSettings, split_at
from server.model.fake import FakeEngine
from server.model.runtime import PROMPT_CHUNK_TOKENS, Cancelled, CancelToken, Runtime
from server.model.worker import ModelWorker


def completer(answer: str = "42\n", **settings: int) -> tuple[Completer, FakeEngine]:
    engine = FakeEngine(lambda prompt: answer)
    return Completer(Runtime(engine), settings=CompletionSettings(**settings)), engine


def request(text: str) -> CompletionRequest:
    line = text[: text.index("█")].count("\n")
    column = len(text[: text.index("█")].rsplit("\n", 1)[-1])
    return CompletionRequest(Path("m.py"), text.replace("█", ""), line, column)


def test_split_at_counts_code_points() -> None:
    assert split_at("a👋b\ncd", 0, 2) == ("a👋", "b\ncd")
    assert split_at("ab\ncd", 5, 0) == ("ab\ncd", "")


def test_stops_at_end_token_and_counts_tokens() -> None:
    comp, _ = completer("x + 1")
    result = comp.complete(request("y = █\n"))
    assert result.text == "x + 1"
    assert result.reason == "end-token"
    assert result.tokens["generated"] == len("x + 1")


def test_typing_reuses_the_kv_prefix() -> None:
    comp, engine = completer()
    comp.complete(request("total = price * █\n"))
    first = engine.evaluated
    result = comp.complete(request("total = price * q█\n"))
    # Everything up to the cursor was cached; only the typed char, the short suffix and the answer are new.
    assert result.tokens["reused"] >= result.tokens["prompt"] - 12
    assert engine.evaluated - first < 20


def test_reset_cache_reevaluates_everything() -> None:
    comp, _ = completer()
    comp.complete(request("a = █\n"))
    result = comp.complete(request("a = █\n"), reset_cache=True)
    assert result.tokens["reused"] == 0


def test_cancel_between_prompt_chunks() -> None:
    """A long prompt is read in chunks and a cancel stops it between them."""
    engine = FakeEngine(lambda p: "never shown")
    runtime = Runtime(engine)
    token = CancelToken()
    evals = 0
    real_eval = engine.eval

    def eval_then_cancel(tokens: list[int]) -> None:
        nonlocal evals
        evals += 1
        real_eval(tokens)
        token.cancel("superseded")

    engine.eval = eval_then_cancel  # type: ignore[method-assign]
    prompt = engine.tokenize("x" * (PROMPT_CHUNK_TOKENS * 5))
    with pytest.raises(Cancelled, match="superseded"):
        runtime.generate(prompt, max_tokens=10, on_text=lambda _: True, cancel=token)
    assert evals == 1


def test_worker_supersedes_older_jobs() -> None:
    worker = ModelWorker()
    started = threading.Event()
    release = threading.Event()

    def slow(token: CancelToken) -> str:
        started.set()
        while not token.cancelled:
            release.wait(0.01)
        token.check()
        return "old"

    first, _ = worker.submit(slow)
    started.wait(5)
    queued, _ = worker.submit(lambda t: "queued")
    latest, _ = worker.submit(lambda t: "latest")
    assert latest.result(5) == "latest"
    with pytest.raises(Cancelled):
        first.result(5)
    with pytest.raises(Cancelled):
        queued.result(5)
    assert worker.cancelled >= 2
    worker.shutdown()


def test_prefix_window_respects_the_budget_exactly_and_moves_rarely() -> None:
    comp, _ = completer(prefix_tokens=400)
    body = "".join(f"value_{i} = compute({i})\n" for i in range(200))
    prompt = comp.build_prompt(request(body + "result = █\n"))
    assert comp.count_tokens(prompt.prefix) <= 400
    assert prompt.prefix.endswith("result = ")
    # Typing more on the cursor line keeps the window's first line: the KV prefix stays valid.
    later = comp.build_prompt(request(body + "result = value█\n"))
    assert later.prefix.split("\n")[0] == prompt.prefix.split("\n")[0]
    assert (len(body.split("\n")) - len(prompt.prefix.split("\n"))) % PREFIX_SNAP_LINES in (0, 1)


def test_suffix_is_short() -> None:
    comp, _ = completer(suffix_tokens=50)
    prompt = comp.build_prompt(request("x = █\n" + "y = 1\n" * 100))
    assert comp.count_tokens(prompt.suffix) <= 50


def test_control_strings_in_user_text_are_stripped() -> None:
    comp, _ = completer()
    prompt = comp.build_prompt(request('s = "<|fim_middle|>"\nx = █\n'))
    assert prompt.text.count("<|fim_middle|>") == 1
