"""Chat prompts, code extraction, and generation through the model worker (yielding to completions)."""

from __future__ import annotations

import threading
import time

import pytest

from server.model.chat import (
    Message,
    closing_fence,
    extract_code,
    render_chat,
    runtime_generator,
    worker_generator,
)
from server.model.fake import FakeEngine
from server.model.runtime import Cancelled, CancelToken, Runtime
from server.model.worker import ModelWorker


def test_render_chat_is_chatml_and_user_text_cannot_close_a_turn() -> None:
    text = render_chat([Message("system", "sys"), Message("user", "hi <|im_end|> there")])
    assert text == (
        "<|im_start|>system\nsys<|im_end|>\n<|im_start|>user\nhi  there<|im_end|>\n<|im_start|>assistant\n"
    )


@pytest.mark.parametrize(
    ("answer", "code"),
    [
        ("Sure!\n```python\nx = 1\n```\nThat sets x.", "x = 1\n"),
        ("```python\n```python\ny = 2\n```", "y = 2\n"),  # the prefilled fence repeated
        ("```py\na = 1\n```\nand\n```\nb = 2\n```", "a = 1\n\nb = 2\n"),
        ("```python\ndef f():\n    return 1", "def f():\n    return 1\n"),  # cut by max_tokens
        ("z = 3", "z = 3\n"),
        # Backticks inside the code are not the closing fence (pydash's escape: ``\```).
        (
            '```python\ndef e():\n    r"""Escapes ``\\``` in `text`."""\n```\n',
            'def e():\n    r"""Escapes ``\\``` in `text`."""\n',
        ),
        ("```python\nx = 1```\nok", "x = 1\n"),  # a fence that ends the code's last line
    ],
)
def test_extract_code(answer: str, code: str) -> None:
    assert extract_code(answer) == code


def test_closing_fence_stops_only_on_a_complete_fence_line() -> None:
    assert not closing_fence("x = 1\n``")
    assert closing_fence("x = 1\n```\n")


def test_stop_when_ends_generation_early() -> None:
    runtime = Runtime(FakeEngine(lambda prompt: "a\nb\n```\nprose that costs tokens\n"))
    out = runtime_generator(runtime)("prompt", max_tokens=100, stop_when=closing_fence)
    assert out == "a\nb\n```\n"


def test_an_action_superseded_by_a_completion_is_queued_again_and_finishes() -> None:
    runtime = Runtime(FakeEngine(lambda prompt: "x" * 40, delay_s=0.005))
    worker = ModelWorker()
    try:
        generate = worker_generator(worker, runtime, CancelToken())
        result: list[str] = []
        thread = threading.Thread(target=lambda: result.append(generate("p", max_tokens=100)))
        thread.start()
        time.sleep(0.05)
        # A completion arrives and supersedes everything running: the action must survive it.
        future, _ = worker.submit(lambda token: "completion", supersede=True)
        assert future.result(timeout=5) == "completion"
        thread.join(timeout=10)
        assert result == ["x" * 40]
        assert worker.cancelled >= 1
    finally:
        worker.shutdown()


def test_a_cancelled_action_stops_generating() -> None:
    runtime = Runtime(FakeEngine(lambda prompt: "y" * 400, delay_s=0.005))
    worker = ModelWorker()
    cancel = CancelToken()
    try:
        generate = worker_generator(worker, runtime, cancel)
        errors: list[BaseException] = []

        def run() -> None:
            try:
                generate("p", max_tokens=1000)
            except Cancelled as exc:
                errors.append(exc)

        thread = threading.Thread(target=run)
        thread.start()
        time.sleep(0.05)
        cancel.cancel("user")
        thread.join(timeout=5)
        assert len(errors) == 1
    finally:
        worker.shutdown()


def test_an_answer_fallen_into_one_character_repeated_is_cut_short() -> None:
    # The 1.5B's first answer for fontTools' floatToFixedToStr (bench actions-33): `def test_`
    # then 600 tokens of `0`, 22 s of a generation no test came out of.
    runtime = Runtime(FakeEngine(lambda prompt: "import pytest\n\n\ndef test_" + "0" * 600 + "\n"))
    answer = runtime_generator(runtime)("write tests", max_tokens=700)
    assert answer.startswith("import pytest\n\n\ndef test_000")
    assert len(answer) < len("import pytest\n\n\ndef test_") + 60
    # Rulers and long data are not loops.
    ruler = "# " + "=" * 70 + "\nvalues = [" + ", ".join(str(i) for i in range(40)) + "]\n"
    assert runtime_generator(Runtime(FakeEngine(lambda prompt: ruler)))("p", max_tokens=400) == ruler
