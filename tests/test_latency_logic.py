"""The latency logic without a server: typing-through, in-flight agreement, hot streak, debounce,
and the model worker's supersede (the mechanism behind cancelling stale work)."""

from __future__ import annotations

import threading
import time

import pytest

from server.latency import (
    MAX_BACKSPACE_CHARS,
    AdaptiveDebounce,
    Suggestion,
    SuggestionCache,
    agrees,
    before_closed,
    below_header,
    continuation,
    early_text,
    editor_closed,
    editor_rest,
    next_line_cursor,
    types_over,
    within_left_out,
    without_editor_rest,
)
from server.model.runtime import Cancelled, CancelToken
from server.model.worker import ModelWorker
from server.request import CompletionContext

URI = "file:///demo.py"


def at(prefix: str, suffix: str = "\n") -> CompletionContext:
    return CompletionContext(URI, prefix, suffix)


# --- typing-through -----------------------------------------------------------------------


def test_typing_the_suggestion_serves_the_rest() -> None:
    made = at("def f(x):\n    return x")
    assert continuation(made, " * 2 + 1", at("def f(x):\n    return x *")) == " 2 + 1"
    assert continuation(made, " * 2 + 1", at("def f(x):\n    return x * 2 +")) == " 1"


def test_typing_something_else_or_all_of_it_serves_nothing() -> None:
    made = at("y = ")
    assert continuation(made, "compute()", at("y = x")) is None
    assert continuation(made, "compute()", at("y = compute()")) is None  # fully typed: nothing left


def test_a_changed_suffix_invalidates() -> None:
    made = at("y = ", "\nz = 1\n")
    assert continuation(made, "compute()", at("y = comp", "\nz = 2\n")) is None
    assert (
        continuation(made, "compute()", CompletionContext("file:///other.py", "y = comp", "\nz = 1\n"))
        is None
    )


def test_backspace_on_the_same_line_offers_the_deleted_text_again() -> None:
    made = at("items.app")
    assert continuation(made, "end(x)", at("items.ap")) == "pend(x)"
    assert continuation(made, "end(x)", at("items.")) == "append(x)"
    # Across a line break, or more than a typo's worth: ask the model again.
    assert continuation(at("a\nb"), "c", at("a")) is None
    long = "x" * (MAX_BACKSPACE_CHARS + 2)
    assert continuation(at("y = " + long), "z", at("y = ")) is None


def test_cache_prefers_the_newest_valid_suggestion() -> None:
    cache = SuggestionCache(per_document=2)
    cache.put(Suggestion(at("a = "), "one()", "model"))
    cache.put(Suggestion(at("a = "), "other()", "model"))
    hit = cache.lookup(at("a = o"))
    assert hit is not None and hit[1] == "ther()"
    hit = cache.lookup(at("a = on"))
    assert hit is not None and hit[1] == "e()"
    cache.put(Suggestion(at("b = "), "two", "model"))  # evicts the oldest of this document
    assert cache.lookup(at("a = on")) is None
    cache.drop(URI)
    assert len(cache) == 0


def test_cache_forgets_least_recent_documents() -> None:
    cache = SuggestionCache(documents=2)
    for n in range(3):
        cache.put(Suggestion(CompletionContext(f"file:///{n}.py", "x = ", ""), "1", "model"))
    assert cache.lookup(CompletionContext("file:///0.py", "x = ", "")) is None
    assert cache.lookup(CompletionContext("file:///2.py", "x = ", "")) is not None


# --- following an in-flight generation -----------------------------------------------------


def test_in_flight_agreement() -> None:
    made = at("x = fo")
    assert agrees(made, "o_b", at("x = foo"))  # typed "o", the model wrote "o_b" so far
    assert agrees(made, "o", at("x = foo_ba"))  # typed past the output so far: may still agree
    assert not agrees(made, "o_b", at("x = fox"))
    assert not agrees(made, "o_b", at("x = f"))  # backspace: a different request


# --- an editor that closes brackets (VS Code) ------------------------------------------------


def test_the_closer_an_editor_put_after_a_typed_bracket_is_not_a_change() -> None:
    made = at("  return ", "\n}\n")
    assert editor_closed(made, at("  return (", ")\n}\n")) == ")"
    assert editor_closed(made, at("  return f('", "')\n}\n")) == "')"
    assert editor_closed(made, at("  return (a)", "\n}\n")) == ""  # typed over
    # Text after the cursor that closes nothing typed is another edit.
    assert editor_closed(made, at("  return (", "]\n}\n")) is None
    assert editor_closed(made, at("  return ", "x\n}\n")) is None
    assert editor_closed(made, at("  return (", "\n}\n}\n")) is None
    # Enter between braces: the `}` on a line of its own below the cursor.
    header = at("  if (x) {\n", "\n}\n")
    assert editor_closed(header, at("  if (x) {\n    ", "\n  }\n}\n")) == "\n  }"


def test_the_rest_of_a_line_the_editor_closed_is_told_from_code() -> None:
    assert editor_rest(at("  return (", ")\n}\n")) == ")"
    assert editor_rest(at("  if (x) {", "}\n")) == "}"
    assert editor_rest(at("  f(['", "'])\n")) == "'])"
    assert editor_rest(at("  return (", "a)\n")) == ""  # code after the cursor
    assert editor_rest(at("  x = ", ")\n")) == ""  # closes nothing on the line
    assert editor_rest(at("  f('a', ", "')\n")) == ""  # the quote before is closed


def test_an_answer_stops_before_what_the_editor_closed() -> None:
    assert before_closed("source: T) => f(x)", ")") == "source: T"
    assert before_closed("f(a), b", ")") == "f(a), b"  # its own brackets are its own
    assert before_closed("name')", "')") == "name"
    # `{|}`: the body, and the `}` stays where the answer put it, on its own line.
    assert before_closed("\n    body();\n  }\n  next();", "}") == "\n    body();\n  "
    # After Enter the editor already put it below the cursor.
    assert before_closed("body();\n  }\n  next();", "\n  }") == "body();"


def test_an_answer_that_goes_on_past_what_the_editor_closed_replaces_it() -> None:
    """`v.Len(|)` answered `).Kind()`: the answer writes the `)` itself and goes on; shown whole, it
    replaces the editor's `)`. An answer that ends at the closer, or only closes, stops before it."""
    assert types_over(").Kind() == 0", ")") == 1
    assert types_over("a, b) + 1", ")") == 1
    assert types_over("x')", "')") == 0  # nothing after it: before_closed's "x"
    assert types_over("a, b)", ")") == 0
    assert types_over(")\n    more()", ")") == 0  # the line ends at the closer
    assert types_over("f(a)", ")") == 0  # its own brackets: it never reaches the editor's
    assert types_over("a]) + 1", ")") == 0  # another closer first
    assert types_over(").x", ")\n  }") == 1  # the closer lines below are another matter
    assert types_over(").x", "\n  }") == 0
    assert types_over("'name').x", "')") == 0  # the quote's own: `'name'`, then `)` is not `')`
    assert types_over("name').lower()", "')") == 2


def test_the_request_leaves_out_closer_lines_below_that_close_blocks_open_above() -> None:
    """VS Code's Enter between braces puts the `}` below the cursor; once the block is typed the
    user steps past it. The text after the cursor the model reads is the same before and after
    (else it read the typed body again, ~1 s on 2 cores)."""
    head = "function f(x) {\n  if (x) {\n    return 1;"
    rest = "\n}\n\nexport const g = 1;\n"  # the function's own end: the file's, and kept
    inside, closed = without_editor_rest(at(head, "\n  }" + rest))
    assert closed == "\n  }" and inside.suffix == rest
    past, closed = without_editor_rest(at(head + "\n  }", rest))
    assert closed == "" and past.suffix == rest
    # `})` below a callback opened by `foo((b) => {`; the same line's `)` too.
    call = "function f() {\n  foo(a, (b) => {\n    return max("
    _, closed = without_editor_rest(at(call, ")\n  });\n}\n"))
    assert closed == ")\n  });"
    # Python: Enter between the brackets of a call.
    _, closed = without_editor_rest(at("def f():\n    return foo(\n        a,", "\n    )\n\nx = 1\n"))
    assert closed == "\n    )"
    # Not: code after the cursor on its line; a closer at another indentation; code below.
    for prefix, suffix in (
        (head, " // c\n  }\n}\n"),
        ("function f(x) {\n    if (x) {\n    return 1;", "\n  }\n}\n"),
        (head, "\n    return 2;\n  }\n}\n"),
    ):
        assert without_editor_rest(at(prefix, suffix)) == (at(prefix, suffix), "")


def test_closer_lines_below_a_go_switch_are_left_out_while_its_cases_are_typed() -> None:
    """gofmt puts `case` at its `switch`'s indentation, the closer's: the closers stay left out on
    the blank line after Enter, once the next case's first letter is typed and after a case
    (else the text after the cursor changed at each, and the model read the prompt again)."""
    head = "func f(err error) error {\n\tif err != nil {\n\t\tswitch mode {\n"
    below, rest = "\n\t\t}\n\t}", "\n\treturn nil\n}\n"
    case = "\t\tcase Continue:\n\t\t\treturn err\n"
    for typed in ("\t\t", "\t\tc", "\t\tcase Exit", case + "\t\t", case + "\t\tdefault:", case + "\t\td"):
        request, closed = without_editor_rest(at(head + typed, below + rest))
        assert closed == below and request.suffix == rest, typed
    # A statement at the closer's indentation above the cursor is not a label: nothing is left out.
    odd = "func f() {\n\tif x {\n\ty()\n\t\tz()"
    assert without_editor_rest(at(odd, "\n\t}\n}\n"))[1] == ""


def test_an_answer_stops_before_a_closer_line_already_below() -> None:
    assert within_left_out("foo();\n  }\n  next();", "\n  }", "    ") == "foo();"
    assert within_left_out("\n  }\n  next();", "\n  }\n}", "    return 1;") == ""
    assert within_left_out("a, b)", ")\n  }", "    return max(") == "a, b"
    # Another block's `}` (at the cursor's indentation, not the one below) is the answer's own.
    assert within_left_out("}\n  if (y) {", "\n}", "    ") == "}\n  if (y) {"


def test_typing_through_goes_on_inside_the_brackets_the_editor_closed() -> None:
    made = at("  return ", "\n}\n")
    answer = "(source: Observable<T>) => source.pipe(take(1))"
    # The rest up to the `)` the editor put there: the user types over it.
    assert continuation(made, answer, at("  return (", ")\n}\n")) == "source: Observable<T>"
    typed_over = at("  return (source: Observable<T>)", "\n}\n")
    assert continuation(made, answer, typed_over) == " => source.pipe(take(1))"
    cache = SuggestionCache()
    cache.put(Suggestion(made, answer, "model"))
    hit = cache.lookup(at("  return (sou", ")\n}\n"))
    assert hit is not None and hit[1] == "rce: Observable<T>"
    assert agrees(made, "(source", at("  return (so", ")\n}\n"))


def test_enter_between_braces_an_editor_closed_is_served_by_the_hot_streak() -> None:
    """At `{|}` the line below the header is prepared as if the `}` were not there; after Enter the
    editor puts it below the cursor, and the prepared body is shown (without any `}` of its own)."""
    header = at("function f(x) {\n  if (x) {", "}\n}\n")
    below = below_header(header)
    assert below == at("function f(x) {\n  if (x) {\n", "\n}\n")
    cache = SuggestionCache()
    cache.put(Suggestion(below, "    throw new Error(x);\n  }\n  return 1;", "hot-streak"))
    hit = cache.lookup(at("function f(x) {\n  if (x) {\n    ", "\n  }\n}\n"))
    assert hit is not None and hit[1] == "throw new Error(x);"
    # A line suffix that is not the editor's closer is not a header's end.
    assert below_header(at("  if (x) {", "return 1; }\n")) is None


# --- hot streak ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("partial", "shown"),
    [
        ("return self.valu", "return self."),  # half a name waits for the next piece
        ("if value is None:", "if value is None:"),
        ("total = a + b\n    retu", "total = a + b"),  # a finished line is shown whole
        ("x = fo", None),  # "x =": too little to be worth a key
        ("    ", None),
        ("))", None),  # punctuation alone is not a suggestion
        # An answer that starts on the next line (at a block header's end): its words there.
        ("\n        return self.valu", "\n        return self."),
        ("\n        ", None),
        # A line that only closes a block goes with the words of the line after it.
        ("}\n  if (isSymbol(va", "}\n  if (isSymbol("),
        ("});\n  return total;\n", "});\n  return total;"),
        ("}\n", None),
        ("}\n  }", None),
    ],
)
def test_early_text_shows_finished_words_of_the_first_line(partial: str, shown: str | None) -> None:
    assert early_text(partial) == shown


def test_early_text_is_what_comes_after_the_text_typed_since() -> None:
    assert early_text("for item in items:", "for ") == "item in items:"
    # As the whole answer: no space just inside the bracket the line ends with.
    assert early_text(" rect.area() for", "", "    return sum(") == "rect.area()"
    assert early_text("for item in items:", "while") is None


def test_next_line_cursor_is_the_start_of_the_line_below() -> None:
    made = at("def f(a, b):\n    total = a", "  \n\nprint(1)\n")
    target = next_line_cursor(made, " + b")
    assert target == CompletionContext(URI, "def f(a, b):\n    total = a + b\n", "\n\nprint(1)\n")


def test_next_line_cursor_is_unknown_mid_line() -> None:
    assert next_line_cursor(at("f(a", ")\n"), ", b") is None


def test_hot_streak_entry_serves_the_line_after_enter_at_the_indentation_the_editor_gives() -> None:
    """The model wrote the next line's indentation itself: the entry serves the editor's
    indentation when it agrees (the same level, or back a level after a return)."""
    cache = SuggestionCache()
    made = at("def f(a, b):\n    if a:\n        return b")
    target = next_line_cursor(made, "\n")
    assert target is None  # nothing accepted: nothing to prepare
    target = next_line_cursor(made, " + a")
    assert target is not None
    cache.put(Suggestion(target, "    return a", "hot-streak"))
    hit = cache.lookup(at("def f(a, b):\n    if a:\n        return b + a\n    "))
    assert hit is not None and hit[1] == "return a" and hit[0].source == "hot-streak"
    hit = cache.lookup(at("def f(a, b):\n    if a:\n        return b + a\n    ret"))
    assert hit is not None and hit[1] == "urn a"
    # The editor kept the block's indentation: not the line the model wrote.
    assert cache.lookup(at("def f(a, b):\n    if a:\n        return b + a\n        ")) is None
    # Enter twice: the line after the blank one is the line prepared.
    hit = cache.lookup(at("def f(a, b):\n    if a:\n        return b + a\n\n    "))
    assert hit is not None and hit[1] == "return a"
    # Not so for an answer made at the cursor (it was for that line, not the next one).
    other = SuggestionCache()
    other.put(Suggestion(target, "    return a", "model"))
    assert other.lookup(at("def f(a, b):\n    if a:\n        return b + a\n\n    ")) is None


def test_below_a_header_is_the_start_of_the_next_line() -> None:
    assert below_header(at("def f(x):\n    if x < 0:", "\n")) == CompletionContext(
        URI, "def f(x):\n    if x < 0:\n", "\n"
    )
    assert below_header(at("def f(x):\n    y = x", "\n")) is None
    assert below_header(at("def f(x):\n    if x < 0: ", "\n")) is None  # trailing space


def test_an_answer_taken_whole_where_the_model_ended_its_line_is_known_as_ended() -> None:
    cache = SuggestionCache()
    made = at("def f(a, b):\n    total = a", "\n")
    cache.put(Suggestion(made, " + b", "model", ended=True))
    assert cache.ended(at("def f(a, b):\n    total = a + b", "\n")) is not None
    assert cache.ended(at("def f(a, b):\n    total = a + ", "\n")) is None  # not all of it
    cut = at("def f(a, b):\n    x = a", "\n")
    cache.put(Suggestion(cut, " + b +", "model", ended=False))  # cut off by the token limit
    assert cache.ended(at("def f(a, b):\n    x = a + b +", "\n")) is None


# --- adaptive debounce ---------------------------------------------------------------------


def test_debounce_follows_typing_speed() -> None:
    deb = AdaptiveDebounce(min_s=0.02, max_s=0.2)
    assert deb.delay(URI) == 0.02  # no history yet
    for n in range(10):
        deb.observe(URI, n * 0.1)  # a fast burst: 100 ms between keys
    assert deb.delay(URI) == pytest.approx(0.125, abs=0.01)  # wait a little longer than a key
    assert deb.delay(URI, fresh_line=True) == 0.02  # after Enter the user reads: ask at once
    slow = "file:///slow.py"
    for n in range(10):
        deb.observe(slow, n * 0.4)  # 400 ms between keys: the next key will not come in time
    assert deb.delay(slow) == 0.02
    deb.observe(slow, 100.0)  # a pause is not typing speed
    assert deb.delay(slow) == 0.02
    deb.forget(URI)
    assert deb.delay(URI) == 0.02


def test_the_debounce_knows_how_long_the_keyboard_has_been_quiet() -> None:
    deb = AdaptiveDebounce(min_s=0.02, max_s=0.2)
    assert deb.since_last_key(URI) is None
    deb.observe(URI, 10.0)
    assert deb.since_last_key(URI, now=10.3) == pytest.approx(0.3)
    deb.forget(URI)
    assert deb.since_last_key(URI) is None


def test_fixed_debounce() -> None:
    deb = AdaptiveDebounce(min_s=0.05, max_s=0.2, adaptive=False)
    for n in range(5):
        deb.observe(URI, n * 0.1)
    assert deb.delay(URI) == 0.05


# --- supersede -----------------------------------------------------------------------------


def test_a_newer_job_supersedes_the_running_one_and_drops_queued_ones() -> None:
    worker = ModelWorker()
    started = threading.Event()
    ran: list[str] = []

    def long_job(token: CancelToken) -> str:
        started.set()
        for _ in range(200):
            token.check()  # what Runtime does between prompt chunks and tokens
            time.sleep(0.01)
        return "finished"

    def quick(name: str):  # type: ignore[no-untyped-def]
        def job(token: CancelToken) -> str:
            ran.append(name)
            return name

        return job

    first, _ = worker.submit(long_job)
    assert started.wait(5)
    queued, _ = worker.submit(quick("queued"), supersede=False)  # low priority (prefill, hot streak)
    newest, _ = worker.submit(quick("newest"))
    assert newest.result(5) == "newest"
    with pytest.raises(Cancelled):
        first.result(5)
    with pytest.raises(Cancelled):
        queued.result(5)
    assert ran == ["newest"]  # the superseded queued job never touched the model
    assert worker.cancelled == 2
    worker.shutdown()


def test_model_threads_leave_one_cpu_free() -> None:
    from server.model.runtime import model_threads

    assert model_threads(0, cpus=2) == 1
    assert model_threads(0, cpus=1) == 1
    assert model_threads(0, cpus=8) == 7
    assert model_threads(3, cpus=8) == 3


# --- the hot streak's queue ----------------------------------------------------------------


def test_a_prepared_line_the_user_moved_past_gives_way_to_the_one_wanted_now() -> None:
    """Two lines prepared one after the other for different places (the user moved on before the
    first was written): the first is dropped, so the second does not queue behind it."""
    import asyncio

    from server.model.runtime import Runtime
    from server.session import ModelChoice, Session
    from tests.lsp_fakes import SLOW_TOKEN_S, SlowFake

    session = Session(loader=lambda *_: Runtime(SlowFake(lambda prompt: "    x = 1\n")))
    session.load_model(ModelChoice("fake"))
    suggester = session.suggester

    async def main() -> tuple[BaseException | None, str | None]:
        suggester.prepare_next_line(CompletionContext(URI, "def f():\n    a = ", "\n"), "1")
        stale = suggester._streak
        assert stale is not None
        await asyncio.sleep(SLOW_TOKEN_S)
        suggester.prepare_next_line(CompletionContext(URI, "def f():\n    a = 1\n    b = ", "\n"), "2")
        wanted = suggester._streak
        assert wanted is not None and wanted is not stale
        results = await asyncio.gather(stale.future, wanted.future, return_exceptions=True)
        first, second = results
        return (first if isinstance(first, BaseException) else None), (
            None if isinstance(second, BaseException) or second is None else second.text
        )

    try:
        dropped, text = asyncio.run(asyncio.wait_for(main(), 30))
    finally:
        session.close()
    assert isinstance(dropped, Cancelled), dropped
    assert text == "    x = 1"


def test_a_growth_step_gives_way_to_the_line_prepared_next() -> None:
    """A growth step of the prompt (nice to have) is queued or being read when a line is
    prepared for the Enter to come (wanted next): the step is dropped, not waited for."""
    import asyncio

    from server.model.runtime import Runtime
    from server.session import ModelChoice, Session
    from tests.lsp_fakes import SlowReader

    session = Session(loader=lambda *_: Runtime(SlowReader(lambda prompt: "    x = 1\n")))
    session.load_model(ModelChoice("fake"))
    suggester = session.suggester
    body = "".join(f"    v{i} = {i}\n" for i in range(200))
    place = CompletionContext(URI, "def f():\n" + body + "    a = ", "\n", path=None)

    async def main() -> tuple[asyncio.Future[bool] | None, str | None]:
        suggester.grow(place)
        growing = suggester._growing
        await asyncio.sleep(0.1)
        suggester.prepare_next_line(place, "1")
        streak = suggester._streak
        assert streak is not None
        result = await streak.future
        return growing, (result.text if result is not None else None)

    try:
        growing, text = asyncio.run(asyncio.wait_for(main(), 60))
    finally:
        session.close()
    assert growing is not None and growing.done()
    assert isinstance(growing.exception(), Cancelled), growing
    assert text == "    x = 1"
