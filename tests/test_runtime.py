"""The generation loop and the completion pipeline, on the deterministic fake engine."""

from __future__ import annotations

import re
import threading
from collections.abc import Sequence
from pathlib import Path

import pytest

from server.completion import PREFIX_SNAP_LINES, Completer, CompletionSettings
from server.model.fake import FakeEngine
from server.model.postprocess import plan_completion
from server.model.runtime import MIN_INSERT_DISTANCE, PROMPT_CHUNK_TOKENS, Cancelled, CancelToken, Runtime
from server.model.worker import ModelWorker
from server.request import CompletionContext, split_at


def completer(answer: str = "42\n", **settings: int) -> tuple[Completer, FakeEngine]:
    engine = FakeEngine(lambda prompt: answer)
    return Completer(Runtime(engine), settings=CompletionSettings(**settings)), engine


def request(text: str) -> CompletionContext:
    line = text[: text.index("█")].count("\n")
    column = len(text[: text.index("█")].rsplit("\n", 1)[-1])
    return CompletionContext.at(Path("m.py"), text.replace("█", ""), line, column)


def test_split_at_counts_code_points() -> None:
    assert split_at("a👋b\ncd", 0, 2) == ("a👋", "b\ncd")
    assert split_at("ab\ncd", 5, 0) == ("ab\ncd", "")


def test_stops_at_end_token_and_counts_tokens() -> None:
    comp, _ = completer("x + 1")
    result = comp.complete(request("y = █\n"))
    assert result.text == "x + 1"
    assert result.reason == "end-token"
    # One more: the trailing space of `y = ` is healed (written by the model, not shown again).
    assert result.tokens["generated"] == len(" x + 1")


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


def test_typing_on_a_line_only_appends_to_the_prompt() -> None:
    """The cursor line's typed text follows the FIM middle marker: the suffix stays cached."""
    comp, engine = completer(suffix_tokens=200)
    suffix = "".join(f"    step_{i}(data)\n" for i in range(20))
    first = comp.build_prompt(request("def run(data):\n    total = █\n" + suffix))
    later = comp.build_prompt(request("def run(data):\n    total = sum█\n" + suffix))
    assert later.tokens[: len(first.tokens)] == first.tokens
    # The unfinished end of the line is healed: the model writes it with its own tokens.
    assert first.text.endswith("<|fim_middle|>    total =") and first.heal == " "
    assert later.heal == " sum"
    comp.complete(request("def run(data):\n    total = █\n" + suffix))
    before = engine.evaluated
    result = comp.complete(request("def run(data):\n    total = sum█\n" + suffix))
    # Only the typed characters and the answer are read; 200 tokens of suffix are not.
    assert result.tokens["reused"] >= len(first.tokens) - 1
    assert engine.evaluated - before < 10


def test_at_a_block_headers_end_the_answer_starts_on_the_next_line() -> None:
    """Left free, the 1.5B writes on the header's line first (`  # pragma: no cover`, or nothing):
    the first token it may choose is a new line, and the answer shows it."""

    def script(prompt: str) -> str:
        # The model's own choice at the header's end is a comment; once on the next line, the body.
        return "        return -x\n" if prompt.endswith(":\n") else "  # negative\n        return -x\n"

    comp = Completer(Runtime(FakeEngine(script)), settings=CompletionSettings())
    header = "def sign(x):\n    if x < 0:█\n    return x\n"
    assert comp.complete(request(header)).text == "\n        return -x"
    # Not after a colon that opens no block (a dict entry), nor where the line goes on.
    assert not comp.build_prompt(request("d = {\n    'a':█\n}\n")).plan.opens_block
    assert not comp.build_prompt(request("def f(x):\n    y = x█\n")).plan.opens_block
    # A brace opens a block too (the 1.5B answered `{` with ` return low; }` on the header's line).
    assert plan_completion("function f(x) {\n  if (x < 0) {", "\n}\n", "javascript").opens_block


def test_a_first_line_that_only_closes_a_block_comes_with_the_line_after_it() -> None:
    """On a slow machine a block answer stops after its first line; after a block's last statement
    that line is `}` (one key, not worth a suggestion), so the line after it comes with it."""
    answer = "}\n  if (isSymbol(value)) {\n    return NAN;\n  }\n"
    comp = Completer(Runtime(FakeEngine(lambda prompt: answer)), settings=CompletionSettings())
    source = "function f(value) {\n  if (a) {\n    return value;\n  █\n}\n\nexport default f;\n"
    at = CompletionContext.at(
        Path("m.js"), source.replace("█", ""), 3, len(source.split("\n")[3].split("█")[0])
    )
    result = comp.complete(at, first_line=True)
    assert (result.text, result.reason) == ("}\n  if (isSymbol(value)) {", "first-line")
    # A line of code first is still a line on its own.
    python = "def f(x):\n    y = x\n    █\n"
    comp, _ = completer("z = y\n    return z\n")
    assert comp.complete(request(python), first_line=True).text == "z = y"


class SecondChoiceFake(FakeEngine):
    """A fake whose second-best token is always a space (the scripted answer is the best)."""

    def top_tokens(self, k: int) -> list[int]:
        return [self._pending[0], ord(" ")][:k]


def test_the_line_below_is_the_models_own_indentation_and_never_a_blank_line() -> None:
    """The hot streak's `new_line` answer: from the end of `        return low`, the model writes
    the next line back a level. Left free after the forced new line, the model here (as the 1.5B
    after werkzeug's loop) writes blank lines and ends; the line of code it ranks next is taken."""

    def script(prompt: str) -> str:
        if prompt.endswith("return low\n"):
            return "\n\n"  # the body ends (a blank line, then the end token)
        return "   if value > high:\n" if prompt.endswith("return low\n ") else "?\n"

    comp = Completer(Runtime(SecondChoiceFake(script)), settings=CompletionSettings())
    source = "def clamp(value, low, high):\n    if value < low:\n        return low█\n"
    result = comp.complete(request(source), first_line=True, new_line=True)
    assert result.text == "    if value > high:"


def test_classic_layout_keeps_the_cursor_line_in_the_prefix() -> None:
    comp, _ = completer(cursor_line_in_middle=False)  # type: ignore[arg-type]
    prompt = comp.build_prompt(request("x = 1\ny = █\nz = 2\n"))
    assert "y = <|fim_suffix|>" in prompt.text and prompt.text.endswith("<|fim_middle|>")


def test_a_moved_run_of_the_cache_is_shifted_not_read_again() -> None:
    """Text deleted before a long run (a context chunk dropped) costs no re-reading of the run."""
    engine = FakeEngine(lambda prompt: "ok")
    runtime = Runtime(engine)
    tail = engine.tokenize("".join(f"line_{i} = {i}\n" for i in range(30)))
    assert len(tail) > 100
    head = engine.tokenize("# a context chunk that will go away\n")
    runtime.generate(head + tail, max_tokens=4, on_text=lambda _: True)
    before = engine.evaluated
    stats = runtime.generate(head[:3] + tail, max_tokens=4, on_text=lambda _: True)
    assert stats.reused_tokens >= 3 + len(tail) - 1
    assert engine.evaluated - before <= 1 + 3  # the last prompt token again, plus the answer
    assert list(engine.cached_tokens())[: 3 + len(tail)] == head[:3] + tail


def test_a_short_moved_run_is_read_again() -> None:
    engine = FakeEngine(lambda prompt: "ok")
    runtime = Runtime(engine)
    tail = engine.tokenize("z = 1\n")
    runtime.generate(engine.tokenize("abc\n") + tail, max_tokens=2, on_text=lambda _: True)
    stats = runtime.generate(engine.tokenize("ab\n") + tail, max_tokens=2, on_text=lambda _: True)
    assert stats.reused_tokens == 2


def _window_prompt(engine: FakeEngine) -> tuple[list[int], list[int], list[int], list[int]]:
    """A FIM prompt's pieces: its start, a long prefix window, its end, and older lines to insert."""
    start = engine.tokenize("<|fim_prefix|>")
    window = engine.tokenize("".join(f"value_{i} = {i}\n" for i in range(60)))
    end = engine.tokenize("<|fim_suffix|>\n<|fim_middle|>")
    older = engine.tokenize("import os\nimport sys\n")
    assert len(window) > MIN_INSERT_DISTANCE
    return start, window, end, older


def test_text_inserted_far_above_the_cursor_is_read_alone() -> None:
    """Older lines inserted at the top of a long prompt (a growing prefix window) cost only their
    own reading; the same insertion near the end is read again with everything after it."""
    engine = FakeEngine(lambda prompt: "ok")
    runtime = Runtime(engine)
    start, window, end, older = _window_prompt(engine)
    runtime.generate(start + window + end, max_tokens=4, on_text=lambda _: True)
    before = engine.evaluated
    stats = runtime.generate(start + older + window + end, max_tokens=4, on_text=lambda _: True)
    assert engine.evaluated - before <= len(older) + 1 + 3  # the insertion, the last token, the answer
    assert stats.reused_tokens >= len(start) + len(window) + len(end) - 1
    assert list(engine.cached_tokens())[: len(start + older + window)] == start + older + window
    # Near the end (within MIN_INSERT_DISTANCE): everything from the insertion on is read again.
    before = engine.evaluated
    near = start + older + window[:-100] + engine.tokenize("# note\n") + window[-100:] + end
    stats = runtime.generate(near, max_tokens=4, on_text=lambda _: True)
    assert engine.evaluated - before >= 100 + len(end)


def test_an_insertion_that_changes_the_tokens_at_the_seam_still_reads_only_the_new_text() -> None:
    """Real tokenizers join text across the seam differently (Qwen: "\n" + indentation is one
    token), so the old first tokens of a grown prefix window change; the rest is still reused."""
    engine = FakeEngine(lambda prompt: "ok")
    runtime = Runtime(engine)
    start, window, end, older = _window_prompt(engine)
    seam = engine.tokenize("#")  # stands for the token the window's first two became
    runtime.generate(start + window + end, max_tokens=4, on_text=lambda _: True)
    before = engine.evaluated
    grown = start + older + seam + window[2:] + end
    runtime.generate(grown, max_tokens=4, on_text=lambda _: True)
    assert engine.evaluated - before <= len(older) + len(seam) + 1 + 3  # + the last token, the answer
    assert list(engine.cached_tokens())[: len(grown)] == grown


def test_a_grown_window_given_up_again_costs_only_the_seam() -> None:
    """A growth step cancelled after its insertion leaves the cache holding the grown prompt; the
    next request builds the smaller one, whose first window tokens the grown one wrote differently
    (the seam). The rest of the window is shifted back into place, not read again, unless the
    seam is near the prompt's end, where a changed token before the run would mislead the answer."""
    engine = FakeEngine(lambda prompt: "ok")
    runtime = Runtime(engine)
    start, window, end, older = _window_prompt(engine)
    seam = engine.tokenize("#")
    runtime.generate(start + older + seam + window[2:] + end, max_tokens=4, on_text=lambda _: True)
    before = engine.evaluated
    smaller = start + window + end
    stats = runtime.generate(smaller, max_tokens=4, on_text=lambda _: True)
    assert engine.evaluated - before <= 2 + 1 + 3  # the seam, the last token, the answer
    assert stats.reused_tokens >= len(smaller) - 2 - 1
    assert list(engine.cached_tokens())[: len(smaller)] == smaller
    # Near the end: the same change is read again with everything after it.
    short = window[-120:]
    runtime.generate(start + older + seam + short[2:] + end, max_tokens=4, on_text=lambda _: True)
    before = engine.evaluated
    runtime.generate(start + short + end, max_tokens=4, on_text=lambda _: True)
    assert engine.evaluated - before >= len(short) + len(end)


def test_prefix_window_tokenizes_little_per_keystroke_in_a_huge_file() -> None:
    """Windowing counts grid blocks once each: a keystroke re-tokenizes about one window, not the file."""
    comp, engine = completer(prefix_tokens=1536)
    tokenized: list[int] = []
    tokenize = engine.tokenize

    def counting(text: str) -> list[int]:
        tokenized.append(len(text))
        return tokenize(text)

    engine.tokenize = counting  # type: ignore[method-assign]
    body = "".join(f"value_{i} = compute({i}, 'some text')\n" for i in range(9000))
    first = comp.build_prompt(request(body + "result = █\n"))
    tokenized.clear()
    later = comp.build_prompt(request(body + "result = v█\n"))
    window_chars = len(first.prefix) + len(first.suffix)
    assert sum(tokenized) < 6 * window_chars, (sum(tokenized), window_chars)
    assert later.prefix.split("\n")[0] == first.prefix.split("\n")[0]
    assert comp.count_tokens(later.prefix) <= 1536


def test_healing_writes_the_unfinished_end_of_the_line_and_shows_only_what_follows() -> None:
    prompts: list[str] = []

    def script(prompt: str) -> str:
        prompts.append(prompt)
        return "X"

    engine = FakeEngine(script)
    runtime = Runtime(engine)
    seen: list[str] = []
    stats = runtime.generate(
        engine.tokenize("total = su"), max_tokens=8, on_text=lambda p: seen.append(p) is None, heal="m(v)"
    )
    # The healed text is written by the model (one byte per token here) but not shown again.
    assert stats.generated_tokens == len("m(v)") + 1
    assert "".join(seen) == "X"
    assert prompts[-1] == "total = sum(v)"


def test_text_typed_before_a_cached_run_is_read_again_with_the_run() -> None:
    """Reusing a suffix computed against other text before it answered for the old text on the real
    model: an insertion before a run makes the run be read again."""
    engine = FakeEngine(lambda prompt: "ok")
    runtime = Runtime(engine)
    head = engine.tokenize("<|fim_prefix|>def f(x):\n    return x.va")
    tail = engine.tokenize(
        "<|fim_suffix|>\n" + "".join(f"y_{i} = f({i})\n" for i in range(20)) + "<|fim_middle|>"
    )
    runtime.generate(head + tail, max_tokens=4, on_text=lambda _: True)
    stats = runtime.generate(head + engine.tokenize("lu") + tail, max_tokens=4, on_text=lambda _: True)
    assert stats.reused_tokens == len(head)


def test_a_model_marked_for_the_classic_layout_gets_it() -> None:
    """models.toml's `cursor-line-in-middle = false` gives a model the classic layout (no shipped
    model has it since the 0.5B did better with the body after the marker)."""
    from dataclasses import replace

    from server.model.registry import load_registry

    registry = load_registry()
    small, default = registry.get("qwen2.5-coder-0.5b"), registry.get("qwen2.5-coder-1.5b")
    assert small.cursor_line_in_middle and default.cursor_line_in_middle
    engine = FakeEngine(lambda prompt: "1")
    classic = Completer(Runtime(engine, replace(default, cursor_line_in_middle=False)))
    assert classic.build_prompt(request("x = 1\ny = █\n")).text.endswith("<|fim_middle|>")
    middle = Completer(Runtime(engine, default))
    assert middle.build_prompt(request("x = 1\ny = █\n")).text.endswith("<|fim_middle|>y =")


def test_first_line_stops_a_block_after_its_first_line() -> None:
    """What an automatic request asks for: the block's first line, at a line's cost."""
    body = "total = 0\n    for x in xs:\n        total += x\n    return total\n"
    comp, _ = completer(body)
    block = comp.complete(request("def f(xs):\n    █\n"))
    assert block.text is not None and block.text.count("\n") >= 2
    line = comp.complete(request("def f(xs):\n    █\n"), first_line=True)
    assert line.text == "total = 0"
    assert line.reason == "first-line"
    assert line.tokens["generated"] <= len("    total = 0\n")  # the healed indentation, the line
    # A line completion is unchanged by it.
    assert comp.complete(request("y = █\n"), first_line=True).text == "total = 0"


def test_a_prompt_built_keystroke_by_keystroke_equals_one_built_from_scratch() -> None:
    """build_prompt remembers the window above the body, the suffix window and the tokens before
    the middle marker between keystrokes: what it builds must not depend on that memory, also
    when the text above the body or after the cursor changes between two keystrokes."""
    engine = FakeEngine(lambda prompt: "1")
    above = "".join(f"def helper_{i}(v):\n    return v + {i}\n\n\n" for i in range(60))
    body = "def total(values):\n    acc = 0\n    for v in values:\n        acc += helper_3(v)\n"
    body += "    return acc\n"
    after = "\n\nprint(total([1, 2]))\n"
    typing = Completer(Runtime(engine))
    states = [above + body[:n] + "█" + after for n in range(len("def total(values):\n"), len(body), 3)]
    states.append(above.replace("helper_0", "helper_zero") + body + "█" + after)  # an edit above
    states.append(above + body + "█" + after.replace("print", "show"))  # an edit after the cursor
    for state in states:
        fresh = Completer(Runtime(engine))
        assert typing.build_prompt(request(state)).tokens == fresh.build_prompt(request(state)).tokens


@pytest.mark.model
def test_a_small_read_split_in_two_batches_leaves_the_same_cache_and_next_token() -> None:
    """EngineConfig.small_batch: 8-15 new tokens read as two batches (a slower kernel takes 8 at
    once on some CPUs) put the same tokens in the KV cache, and the model predicts the same."""
    from server.model.llamacpp import EngineConfig, LlamaEngine
    from server.model.registry import load_registry, resolve
    from tests.conftest import TEST_MODEL

    spec = load_registry().get(TEST_MODEL)
    text = "def mean(values):\n    total = sum(values)\n    return total / len("
    answers = []
    for small in (0, 7):
        engine = LlamaEngine(resolve(spec), spec.family, n_ctx=512, config=EngineConfig(1, False, small))
        tokens = engine.vocab.tokenize(text)
        engine.eval(tokens[:-12])
        engine.eval(tokens[-12:])  # 12 tokens: one batch, or two of 6
        assert list(engine.cached_tokens()) == tokens
        answers.append(engine.vocab.token_bytes(engine.argmax()))
        engine.close()
    assert answers[0] == answers[1] and b"values" in answers[0], answers


class WordFake(FakeEngine):
    """A fake whose tokens are whole words with their leading spaces, and which also knows other
    splits of the same text (as a real tokenizer does): the model may write a text one way and the
    prompt tokenize it another."""

    def __init__(self) -> None:
        super().__init__(lambda prompt: "ok")
        self._words: dict[bytes, int] = {}

    def word(self, text: str) -> int:
        return self._words.setdefault(text.encode(), 10_000 + len(self._words))

    def tokenize(self, text: str) -> list[int]:
        out: list[int] = []
        for piece in re.findall(r"<\|\w+\|>|\s*\w+|\s+|.", text):
            out += super().tokenize(piece) if piece in self._specials else [self.word(piece)]
        return out

    def token_bytes(self, token: int) -> bytes:
        found = next((word for word, tid in self._words.items() if tid == token), None)
        return found if found is not None else super().token_bytes(token)

    def detokenize(self, tokens: Sequence[int]) -> str:
        return "".join(
            self.token_bytes(t).decode() if t >= 10_000 else FakeEngine.detokenize(self, [t]) for t in tokens
        )


def test_text_the_model_wrote_is_not_read_again_when_the_prompt_splits_it_differently() -> None:
    """The user typed what the model wrote; the prompt's tokens for that text differ from the
    model's own (`"    " + "for"` against `"   " + " for"`): only the new text is read."""
    engine = WordFake()
    runtime = Runtime(engine)
    head = engine.tokenize("def f(n):<|fim_suffix|>\n<|fim_middle|>")
    written = [engine.word(w) for w in ("    ", "for", " i", " in", " range", "(", "n")]
    runtime.prefill(head + written)  # as after a generation: the prompt, then the model's tokens
    before = engine.evaluated
    typed = engine.tokenize("    for i in range(n):\n")
    assert typed[:2] != written[:2]  # the canonical split starts differently
    runtime.prefill(head + typed)
    new = engine.tokenize("):\n")
    assert engine.evaluated - before == len(new)
    assert list(engine.cached_tokens()) == head + written + new


def test_realigning_never_splits_a_word_the_user_typed_longer() -> None:
    engine = WordFake()
    runtime = Runtime(engine)
    head = engine.tokenize("<|fim_middle|>")
    written = [engine.word(w) for w in ("    ", "x", " =", " item")]
    runtime.prefill(head + written)
    runtime.prefill(head + engine.tokenize("    x = items"))
    cached = list(engine.cached_tokens())
    assert cached[: len(head) + 3] == head + written[:3]
    assert engine.token_bytes(cached[-1]) == b" items"  # not " item" + "s"
