"""Where the FIM middle starts (context/anchor.py), and that typing a function body only appends."""

from __future__ import annotations

from pathlib import Path

import pytest

from context.anchor import function_body_start, middle_start
from server.completion import MAX_MIDDLE_TOKENS, Completer, CompletionSettings
from server.model.fake import FakeEngine
from server.model.runtime import MAX_SEAM_TOKENS, Cancelled, CancelToken, Runtime
from server.request import CompletionContext
from tests.context_helpers import open_shop

MODULE = '''import os


def area(width: float,
         height: float) -> float:
    """The area."""
    if width < 0:
        raise ValueError(width)
'''


def body_start(prefix: str) -> int | None:
    return function_body_start(prefix.split("\n"))


def test_the_middle_starts_after_the_enclosing_functions_header() -> None:
    # A wrapped header: the body starts after the line that ends it.
    assert body_start(MODULE + "    return wid") == 5
    # Inside a nested block of the body, and on a line with only the editor's indentation.
    assert body_start(MODULE + "        x = 1\n        ") == 5
    assert middle_start(MODULE + "    ret") == MODULE.index('    """The area."""')


BLACK_METHOD = """class Client:
    def _build_request_auth(
        self,
        request: Request,
        auth: AuthTypes | UseClientDefault = USE_CLIENT_DEFAULT,
    ) -> Auth:
        auth = (
            self._auth
        )
"""


def test_a_header_wrapped_with_its_closer_at_the_defs_indentation() -> None:
    """Black's layout (and prettier's, gofmt's): the closing line `    ) -> Auth:` sits where the
    def line does. The scan met it first and passed over the def line."""
    assert body_start(BLACK_METHOD + "        if auth is not None:\n            ") == 6
    assert body_start(BLACK_METHOD + "\n        ") == 6
    js = "export function load(\n  url,\n  options,\n) {\n  const r = await fetch(url);\n  return r"
    assert body_start(js) == 4
    go = "package m\n\nfunc Sum(\n\txs []int,\n) int {\n\ttotal := 0\n\ttot"
    assert body_start(go) == 5
    # A wrapped condition inside a body is not a header: the anchor stays the function's.
    body = "def f(a, b):\n    x = 1\n    if (\n        a and b\n    ):\n        "
    assert body_start(body) == 1
    # Twenty parameters, one per line (httpx's request functions).
    params = "".join(f"    p{i}: int = {i},\n" for i in range(20))
    assert body_start("def request(\n" + params + ") -> Response:\n    x = 1\n    ") == 22
    # The return annotation wrapped as well (jinja2's `_extract`).
    wrapped = "    def _extract(\n        self,\n    ) -> t.Iterator[\n        t.Tuple[int, str]\n    ]:\n"
    assert body_start("class E:\n" + wrapped + "        if x:\n            ") == 6
    # A wrapped class header is not a function's.
    assert body_start("class Point(\n    Base,\n):\n    x = 1\n    y") is None


def test_methods_braces_and_arrow_functions() -> None:
    method = (
        "class Cart:\n    items = []\n\n    def total(self):\n        s = 0\n        for i in self.items:\n"
        "            s"
    )
    assert body_start(method) == 4
    js = "export async function load(url) {\n  const r = await fetch(url);\n  return r"
    assert body_start(js) == 1
    go = "package m\n\nfunc Sum(xs []int) int {\n\ttotal := 0\n\tfor _, x := range xs {\n\t\ttot"
    assert body_start(go) == 3


def test_a_nested_function_keeps_the_outer_functions_anchor() -> None:
    """Typing a helper inside a function keeps the prompt's place (and its KV cache)."""
    outer = "def sliced(seq, n, strict=False):\n    it = iter(seq)\n    if strict:\n\n        def ret():\n"
    assert body_start(outer + "            for x in it:\n                yi") == 1
    assert body_start(outer + "            ") == 1
    method = "class A:\n    def run(self):\n        def step(x):\n            return x\n        retu"
    assert body_start(method) == 2
    # A nested header still being typed: the outer function's anchor, not none.
    assert body_start(outer + "            x = 1\n        def helper(\n            a,\n            b") == 1
    # After the outer function, top-level code has none.
    assert body_start(outer + "            pass\n\nvalue = sli") is None


def test_no_function_means_the_cursor_line() -> None:
    # Top-level code, a class body, and a cursor that left the function (dedented to column 0).
    assert body_start("import os\nx = 1\nif x:\n    y") is None
    assert body_start("class A:\n    name = 'a'\n    ti") is None
    prefix = "def f():\n    return 1\n\nresult = f"
    assert body_start(prefix) is None
    assert middle_start(prefix) == prefix.rindex("\n") + 1
    # A header still being typed has no body yet.
    assert body_start("def f(a,\n      b") is None


def test_a_class_header_being_typed_keeps_the_cursor_line_in_the_prefix() -> None:
    """Bases are guessed from the prefix's end, as FIM models are trained; not in a middle."""
    for prefix in (
        "import nodes\n\n\nclass Caution(nodes.",
        "class Trino(Presto):\n    class Generator(",
        "def build():\n    class Local(Base, metaclass=M",
        "export default class Panel extends ",
    ):
        assert middle_start(prefix) == len(prefix), prefix
    # Once the header ends, its body is like any other line; a name merely containing "class" is
    # not a header.
    assert middle_start("class A(B):\n    x = ") == len("class A(B):\n")
    assert middle_start("subclass = make(") == 0
    completer = Completer(Runtime(FakeEngine(lambda prompt: "\n")), settings=CompletionSettings())
    prompt = completer.build_prompt(CompletionContext("m.py", "class Trino(Presto):\n    class G(", "\n"))
    assert prompt.text.endswith("<|fim_middle|>") and "class G(<|fim_suffix|>" in prompt.text


def test_typing_a_body_line_by_line_only_appends_to_the_prompt() -> None:
    """The point of the anchor: new lines in a body never invalidate the cached prompt head."""
    engine = FakeEngine(lambda prompt: "\n")
    completer = Completer(Runtime(engine), settings=CompletionSettings())
    body = "    if width < 0:\n        raise ValueError(width)\n    return width * height\n"
    head = MODULE[: MODULE.index('    """')]
    suffix = "\n\ndef perimeter(width, height):\n    return 2 * (width + height)\n"
    contexts = [
        CompletionContext("file:///m.py", head + body[:typed], suffix, path=Path("m.py"), language="python")
        for typed in range(1, len(body))
    ]
    _assert_each_prompt_keeps_the_one_before(completer, contexts)
    assert (
        "if width < 0:\n        raise" in completer.build_prompt(contexts[-1]).text.split("<|fim_middle|>")[1]
    )


def _as_an_editor_types(body: str) -> list[int]:
    """The lengths of `body` typed key by key, as an editor types it: Enter puts the cursor at the
    line's indentation at once (no state with part of the indentation)."""
    return [i for i in range(1, len(body)) if body[body.rfind("\n", 0, i) + 1 : i].strip() or body[i] != " "]


def _assert_each_prompt_keeps_the_one_before(completer: Completer, contexts: list[CompletionContext]) -> None:
    """All of each previous prompt but its last few tokens (a word being typed) is kept."""
    previous: list[int] | None = None
    for ctx in contexts:
        prompt = completer.build_prompt(ctx)
        tokens = prompt.tokens + completer.runtime.tokenize(prompt.heal)
        if previous is not None:
            kept = next(
                (i for i, (a, b) in enumerate(zip(previous, tokens, strict=False)) if a != b), len(previous)
            )
            assert kept >= len(previous) - 8, ctx.prefix[-80:]
        previous = tokens


def test_typing_the_body_of_a_black_wrapped_method_only_appends_to_the_prompt() -> None:
    completer = Completer(Runtime(FakeEngine(lambda prompt: "\n")), settings=CompletionSettings())
    body = "        if auth is not None:\n            return auth\n\n        return Auth()\n"
    states = _as_an_editor_types(body)
    contexts = [
        CompletionContext("file:///c.py", BLACK_METHOD + body[:typed], "\n", path=Path("c.py"))
        for typed in states
    ]
    _assert_each_prompt_keeps_the_one_before(completer, contexts)


def test_a_body_longer_than_the_scan_keeps_a_middle_start_while_typed() -> None:
    """600 lines into one function the def is out of reach: the middle starts on a fixed grid line
    instead of at each new line (a new place and a cold prompt every line)."""
    head = "def run(graph):\n" + "".join(f"    step_{i} = graph.step({i})\n" for i in range(600))
    starts = set()
    for extra in range(12):
        prefix = head + "".join(f"    more_{j} = step_{j}\n" for j in range(extra)) + "    mo"
        start = middle_start(prefix)
        assert start < prefix.rindex("\n") + 1
        starts.add(start)
    assert len(starts) <= 2  # the grid moves at most once in 12 lines
    # Not for module-level code.
    module = "".join(f"value_{i} = {i}\n" for i in range(600)) + "val"
    assert middle_start(module) == module.rindex("\n") + 1


def test_typing_in_a_very_long_body_only_appends_to_the_prompt() -> None:
    completer = Completer(Runtime(FakeEngine(lambda prompt: "\n")), settings=CompletionSettings())
    head = "def run(graph):\n" + "".join(f"    step_{i} = graph.step({i})\n" for i in range(600))
    body = "    total = step_1 + step_2\n    if total:\n        graph.emit(total)\n    return total\n"
    states = _as_an_editor_types(body)
    contexts = [
        CompletionContext("file:///g.py", head + body[:typed], "\n", path=Path("g.py")) for typed in states
    ]
    _assert_each_prompt_keeps_the_one_before(completer, contexts)


def test_a_long_body_moves_the_middle_down_in_steps() -> None:
    engine = FakeEngine(lambda prompt: "\n")
    completer = Completer(Runtime(engine), settings=CompletionSettings())
    body = "".join(f"    value_{i} = compute_something(value_{i - 1}, {i})\n" for i in range(1, 200))
    ctx = CompletionContext("file:///m.py", "def f():\n" + body + "    ret", "\n", path=Path("m.py"))
    middle = completer.build_prompt(ctx).text.split("<|fim_middle|>")[1]
    assert 0 < completer.count_tokens(middle) <= MAX_MIDDLE_TOKENS
    assert middle.startswith("    value_")


@pytest.mark.parametrize(
    "imports", ["", "import os\nfrom shop.tax import apply_tax, rate_for\n\n"], ids=["no imports", "imports"]
)
def test_a_cold_prompt_starts_small_and_grows_to_the_full_one_reading_only_what_it_adds(imports: str) -> None:
    """A new place gets a small prompt at once; growth steps then read only their added text, and
    the grown prompt is exactly the full one (what the evaluation measures), the import header
    above the window included."""
    engine = FakeEngine(lambda prompt: "x\n")
    completer = Completer(Runtime(engine), settings=CompletionSettings(prefix_tokens=1024, suffix_tokens=128))
    above = imports + "".join(f"setting_{i} = {i}\n" for i in range(200))
    below = "".join(f"other_{i} = {i}\n" for i in range(40))
    ctx = CompletionContext(
        "file:///m.py", above + "def f(a):\n    return a", "\n\n" + below, path=Path("m.py")
    )
    cold = completer.build_prompt(ctx, grow=True)
    full = completer.build_prompt(ctx)
    assert len(cold.tokens) < len(full.tokens) // 2
    assert ("apply_tax" in full.text) == bool(imports) and "apply_tax" not in cold.text
    completer.complete(ctx, grow=True)
    steps, read = 0, []
    while True:
        before = engine.evaluated
        more = completer.grow(ctx)
        read.append(engine.evaluated - before)
        steps += 1
        if not more:
            break
        assert steps < 100
    assert completer.build_prompt(ctx, grow=True).tokens == full.tokens
    # Prefix steps insert a few lines (far from the cursor); suffix steps re-read the short middle.
    assert max(read) < 200, read
    assert sum(read) < len(full.tokens), (sum(read), len(full.tokens))
    # A request in the grown place reads only what was typed.
    before = engine.evaluated
    completer.complete(ctx.forward(" + 1"), grow=True)
    assert engine.evaluated - before < 20


def test_moving_to_another_line_of_the_same_body_keeps_the_grown_prompt() -> None:
    """Only the suffix changes when the cursor goes up a few lines in the body it is in: the grown
    window and context stay in the KV cache, and the model reads the new suffix and the body above
    the cursor, not a cold prompt from its first token."""
    engine = FakeEngine(lambda prompt: "x\n")
    completer = Completer(Runtime(engine), settings=CompletionSettings(prefix_tokens=1024, suffix_tokens=128))
    above = "".join(f"setting_{i} = compute({i})\n" for i in range(200)) + "def f(a):\n"
    lines = [f"    total_{i} = total_{i - 1} + a * {i}\n" for i in range(1, 9)]
    below = "\n\n" + "".join(f"other_{i} = {i}\n" for i in range(40))
    end = CompletionContext("file:///m.py", above + "".join(lines) + "    return", below, path=Path("m.py"))
    completer.complete(end, grow=True)
    while completer.grow(end):
        pass
    up = CompletionContext(
        "file:///m.py",
        above + "".join(lines[:4]) + "    total_4",
        "".join(lines[4:]) + "    return" + below,
        path=Path("m.py"),
    )
    prompt = completer.build_prompt(up, grow=True)
    assert prompt.tokens == completer.build_prompt(up).tokens  # the full prompt, not a cold one
    before = engine.evaluated
    completer.complete(up, grow=True)
    read = engine.evaluated - before
    suffix_and_body = completer.count_tokens(prompt.suffix) + completer.count_tokens("".join(lines[:4]))
    assert read <= suffix_and_body + 20, (read, suffix_and_body, len(prompt.tokens))


class _CancelAfter(CancelToken):
    """Cancels at its `n`-th check: a growth step superseded part-way through its read."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.left = n

    def check(self) -> None:
        self.left -= 1
        if self.left < 0:
            self.cancel("superseded")
        super().check()


def test_a_suffix_step_cancelled_part_way_is_continued_not_undone() -> None:
    """Growing the suffix re-reads the body after it; a request after a cancelled step uses the
    grown suffix and reads only what the step had not, instead of the old suffix and body again."""
    engine = FakeEngine(lambda prompt: "x\n")
    completer = Completer(Runtime(engine), settings=CompletionSettings(prefix_tokens=256, suffix_tokens=128))
    body = "".join(f"    total_{i} = total_{i - 1} + {i}\n" for i in range(1, 6)) + "    return total"
    below = "".join(f"other_{i} = {i}\n" for i in range(60))
    ctx = CompletionContext("file:///m.py", "def f(total_0):\n" + body, "\n\n" + below, path=Path("m.py"))
    completer.complete(ctx, grow=True)
    cold_suffix = completer.build_prompt(ctx, grow=True).suffix
    with pytest.raises(Cancelled):
        completer.grow(ctx, _CancelAfter(1))  # one chunk of the new suffix and the body read
    kept = list(engine.cached_tokens())
    grown = completer.build_prompt(ctx, grow=True)
    assert len(grown.suffix) > len(cold_suffix)
    assert grown.tokens[: len(kept)] == kept  # what the step read is the start of the next prompt
    assert len(grown.tokens) > len(kept)  # and it was cancelled part-way
    before = engine.evaluated
    completer.complete(ctx, grow=True)
    assert engine.evaluated - before <= len(grown.tokens) - len(kept) + len(grown.heal) + len("x\n")


def test_a_growing_prompt_gains_context_chunks_before_those_it_shows_and_reads_only_them(
    tmp_path: Path,
) -> None:
    """The cold prompt shows the retriever's last (most important) chunks as the full prompt
    shows them; growing inserts the others before them, so only their text is read."""
    root, index = open_shop(tmp_path)
    engine = FakeEngine(lambda prompt: "x\n")
    settings = CompletionSettings(context_tokens=800, prefix_tokens=256, suffix_tokens=64)
    completer = Completer(Runtime(engine), root=root, index=index, settings=settings)
    path = root / "app" / "main.py"
    text = path.read_text()
    at = text.index("        cart.add(")
    ctx = CompletionContext(path.as_uri(), text[:at] + "        cart.", text[at:], path=path, root=root)
    cold, full = completer.build_prompt(ctx, grow=True), completer.build_prompt(ctx)
    assert 0 < len(cold.chunks) < len(full.chunks)
    assert cold.chunks == full.chunks[-len(cold.chunks) :]
    completer.complete(ctx, grow=True)
    reads = []
    while True:
        before = engine.evaluated
        more = completer.grow(ctx)
        reads.append(engine.evaluated - before)
        if not more:
            break
    assert list(engine.cached_tokens())[: len(full.tokens)] == full.tokens
    # Only the inserted chunks are read, a few at a time (and the tokens at each seam).
    assert sum(reads) <= len(full.tokens) - len(cold.tokens) + len(reads) * MAX_SEAM_TOKENS, reads
    assert max(reads) < len(full.tokens) - len(cold.tokens), reads


def test_a_body_keeps_its_context_while_typed_and_takes_in_another_file_viewed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Typing in this file ages the other files' recent regions (and pushes them out of the ring),
    which changed what retrieval returned for the same body: every so often the context, the
    prompt's head, was read again (~500 tokens, ~5 s for the 1.5B on 2 cores). A body keeps its
    first retrieval until the user edits or views another file, however long it is typed."""
    root, index = open_shop(tmp_path)
    clock = [1000.0]

    def ticking() -> float:  # every call is 11 s later: no period of time keeps a memo alive
        clock[0] += 11.0
        return clock[0]

    monkeypatch.setattr("time.monotonic", ticking)
    settings = CompletionSettings(context_tokens=400, prefix_tokens=256, suffix_tokens=64)
    completer = Completer(Runtime(FakeEngine(lambda prompt: "\n")), root=root, index=index, settings=settings)
    for line in (2, 3, 4):
        index.note_edit("shop/pricing.py", line)
    path = root / "app" / "main.py"
    text = path.read_text()
    at = text.index("        self.log_event(")
    body = "".join(f"        step_{i} = cart.total() * {i}\n" for i in range(8))
    first: str | None = None
    for typed in _as_an_editor_types(body):
        prefix = text[:at] + body[:typed]
        index.note_edit("app/main.py", prefix.count("\n"))
        index.note_view("app/main.py", prefix.count("\n"))
        ctx = CompletionContext(path.as_uri(), prefix, text[at:], path=path, root=root)
        context = completer.build_prompt(ctx).context_text
        first = first or context
        assert context == first
    assert "shop/pricing.py" in first
    # The user looks at another file: the next request retrieves again and shows it.
    index.note_view("shop/util/text.py", 1)
    assert "shop/util/text.py" in completer.build_prompt(ctx).context_text
