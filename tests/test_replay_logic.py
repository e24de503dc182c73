"""The typing replay's pure parts: the key model, the acceptance rule, the metrics, and the
llama.vim-style peer's context, cache and render rules (no model, no server)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from bench.peer.llamavim_client import (
    SuggestionCache,
    cache_key,
    chunk_similarity,
    local_context,
    lookup,
    render,
)
from bench.replay.accept import MIN_ACCEPT_CHARS, REACTION_S, choose, first_line, readable
from bench.replay.corpus import REGIONS, RegionSpec, body_span, functions, parse_regions
from bench.replay.keys import KEY_MAX_S, PAUSE_S, auto_indent, key_delays
from bench.replay.metrics import Accept, Edit, Show, pause_latencies, percentile, summarize

CODE = "def f(x):\n    if x:\n        return g(x, 1)\n    y = x + 2\n    return y\n"

# --- key model ------------------------------------------------------------------------------


def test_key_delays_are_deterministic_per_region_and_differ_between_regions() -> None:
    assert key_delays(CODE, "a") == key_delays(CODE, "a")
    assert key_delays(CODE, "a") != key_delays(CODE, "b")


def test_a_character_keeps_its_delay_whatever_follows_it() -> None:
    # The same region typed after an accept resumes with the same timings: delays depend only on
    # the region and the position, never on how far the user got.
    assert key_delays(CODE, "a")[:10] == key_delays(CODE[:10], "a")


def test_pauses_come_only_from_the_named_rules() -> None:
    delays = key_delays(CODE * 20, "r")
    text = CODE * 20
    for i, d in enumerate(delays):
        if d >= PAUSE_S:
            assert text[i - 1] in "\n(:= ", (i, text[i - 1], d)
        else:
            assert d <= KEY_MAX_S
    # Enter auto-indents, so the pause after it falls on the first key of the new line.
    first_keys = [
        i for i in range(1, len(text)) if text[i] not in " \n" and text[:i].rstrip(" ").endswith("\n")
    ]
    assert first_keys and all(delays[i] >= PAUSE_S for i in first_keys)


def test_auto_indent_inserts_the_next_lines_indentation() -> None:
    i = CODE.index("\n")
    assert auto_indent(CODE, i) == "\n    "
    assert CODE[i:].startswith(auto_indent(CODE, i))
    assert auto_indent("a\n\nb", 1) == "\n"


# --- acceptance -----------------------------------------------------------------------------


def test_a_suggestion_that_is_what_the_user_types_next_is_taken_whole() -> None:
    take = choose("return g(x, 1)", "return g(x, 1)\n    y = x + 2")
    assert take is not None and take.kind == "full" and take.keys == 1


def test_only_the_matching_first_line_is_taken_when_the_rest_differs() -> None:
    take = choose("return g(x, 1)\n    z = 0", "return g(x, 1)\n    y = x + 2")
    assert take is not None and (take.kind, take.text) == ("line", "return g(x, 1)")


def test_matching_words_are_taken_one_key_each_up_to_the_first_mismatch() -> None:
    take = choose("return g(y, 2)", "return g(x, 1)")
    assert take is not None and (take.kind, take.text, take.keys) == ("word", "return g(", 3)


def test_nothing_is_taken_when_it_does_not_match_or_is_too_short() -> None:
    assert choose("yield x", "return x") is None
    assert choose("", "return x") is None
    assert choose("re", "return x") is None  # fewer than MIN_ACCEPT_CHARS
    assert choose("    ", "    x = 1") is None  # whitespace is not worth a key
    assert MIN_ACCEPT_CHARS == 3


def test_a_suggestion_running_past_the_region_is_cut_to_what_matches() -> None:
    take = choose("return y\n\ndef g():", "return y")
    assert take is not None and take.text == "return y"


def test_first_line_of_a_suggestion_starting_with_a_newline_includes_the_next_line() -> None:
    assert first_line("\n    x = 1\n    y") == "\n    x = 1"
    assert first_line("abc") == "abc"


def test_a_suggestion_is_readable_only_after_the_reaction_time() -> None:
    assert not readable(10.0, 10.0 + REACTION_S / 2)
    assert readable(10.0, 10.0 + REACTION_S)


# --- metrics --------------------------------------------------------------------------------


def test_percentile_is_nearest_rank() -> None:
    assert percentile([], 50) is None
    assert percentile([3.0, 1.0, 2.0], 50) == 2.0
    assert percentile([1.0, 2.0, 3.0, 4.0], 95) == 4.0
    assert percentile([1.0, math.inf], 50) == 1.0


def test_pause_latency_counts_unserved_and_late_suggestions_as_not_served() -> None:
    edits = [
        Edit(1, 0.0, "key", 1, planned_gap=0.5, next_at=0.5),  # served at 0.2 s
        Edit(2, 0.5, "key", 1, planned_gap=0.6, next_at=1.1),  # suggestion came after the user went on
        Edit(3, 1.1, "key", 1, planned_gap=0.1, next_at=1.2),  # not a pause
        Edit(4, 1.2, "key", 1, planned_gap=2.0, next_at=3.2),  # nothing shown
        Edit(5, 3.2, "accept", 5, planned_gap=None),
    ]
    shows = [Show(1, 0.2, "abc"), Show(2, 1.3, "late"), Show(3, 1.15, "short gap")]
    lat = pause_latencies(edits, shows)
    assert lat[0] == pytest.approx(0.2)
    assert lat[1:] == [math.inf, math.inf]


def test_a_pause_cut_short_by_an_accept_is_still_a_served_pause() -> None:
    edits = [Edit(1, 0.0, "key", 1, planned_gap=1.0, next_at=0.45), Edit(2, 0.45, "accept", 4)]
    lat = pause_latencies(edits, [Show(1, 0.2, "abcd")])
    assert lat == [pytest.approx(0.2)]


def test_summary_rates() -> None:
    edits = [
        Edit(1, 0.0, "key", 1, planned_gap=0.5, next_at=0.5),
        Edit(2, 0.5, "accept", 9, planned_gap=1.5, next_at=2.0),
        Edit(3, 2.0, "key", 1, planned_gap=None),
    ]
    shows = [Show(1, 0.1, "abcdefghi"), Show(2, 0.9, "zzz"), Show(3, 2.3, "late")]
    accepts = [Accept(0.5, 0, "full", 9, 1)]
    s = summarize(edits, shows, accepts, total_chars=20)
    assert s["chars_saved"] == 0.45
    assert s["acceptance_rate"] == 0.333
    assert s["pauses"] == 2
    assert s["pauses_served_within_1s"] == 1.0
    assert s["pause_to_suggestion_ms"] == {"p50": 100.0, "p95": 400.0}
    assert s["keystrokes"] == 2 and s["accept_keys"] == 1


def test_typed_characters_are_counted_by_what_was_on_screen() -> None:
    edits = [
        Edit(1, 0.0, "key", 1, seen="none"),
        Edit(2, 0.1, "enter", 5, seen="wrong"),
        Edit(3, 0.2, "accept", 9),
        Edit(4, 0.3, "key", 1, seen="unread"),
        Edit(5, 0.4, "key", 1, seen="wrong"),
    ]
    s = summarize(edits, [], [], total_chars=17)
    assert s["typed_chars_while"] == {"none": 1, "wrong": 6, "unread": 1}


def test_the_rest_kept_on_screen_serves_latency_but_is_not_a_new_suggestion() -> None:
    edits = [
        Edit(1, 0.0, "key", 1, planned_gap=0.3, next_at=0.3),
        Edit(2, 0.3, "key", 1, planned_gap=0.6, next_at=0.6),
        Edit(3, 0.6, "accept", 4, planned_gap=None),
    ]
    shows = [
        Show(1, 0.1, "abcde"),
        Show(2, 0.3, "bcde", origin=0, kept=True),
        Show(2, 0.35, "bcde", origin=0),
    ]
    s = summarize(edits, shows, [Accept(0.6, 0, "full", 4, 1)], total_chars=6)
    assert s["shown"] == 1 and s["acceptance_rate"] == 1.0
    # The user saw it at once; the engine's own answer took 50 ms.
    assert s["pause_to_suggestion_ms"]["p50"] == 0.0
    assert s["keystroke_to_suggestion_ms"] == {"p50": 50.0, "p95": 100.0}


def test_an_unserved_median_pause_is_reported_as_not_served() -> None:
    edits = [Edit(1, 0.0, "key", 1, planned_gap=1.0, next_at=1.0), Edit(2, 1.0, "key", 1, planned_gap=None)]
    s = summarize(edits, [], [], total_chars=2)
    assert s["pause_to_suggestion_ms"] == {"p50": None, "p95": None}
    assert s["pauses_served_within_1s"] == 0.0


# --- corpus ---------------------------------------------------------------------------------


def test_the_region_is_the_body_after_the_docstring() -> None:
    source = 'def f(x):\n    """Doc."""\n    y = x\n    return y\n\n\ndef g():\n    pass\n'
    start, end = body_span(source, "f")
    assert source[start:end] == "y = x\n    return y"


TS_MODULE = """\
import { filter } from './filter';

/** The n-th value. Emoji in a comment: 🦀 */
export function elementAt<T>(index: number): (xs: T[]) => T {
  // Checked first.
  if (index < 0) {
    throw new RangeError('é');
  }
  return (xs) => xs[index];
}

const half = (x: number) => {
  return x / 2;
};

function bare() { return 1; }
"""


def test_a_brace_language_region_is_the_body_from_the_first_statement_to_the_last() -> None:
    """The comment opening the body stays in the file (the user wrote it, as a docstring); so does the
    closing brace's line; offsets are characters, whatever the bytes before them (🦀, é)."""
    start, end = body_span(TS_MODULE, "elementAt", "operators/elementAt.ts")
    assert TS_MODULE[start:end] == (
        "if (index < 0) {\n    throw new RangeError('é');\n  }\n  return (xs) => xs[index];"
    )
    assert TS_MODULE[end:].startswith("\n}\n")
    start, end = body_span(TS_MODULE, "half", "operators/elementAt.ts")
    assert TS_MODULE[start:end] == "return x / 2;"
    with pytest.raises(ValueError, match="no function 'bare'"):
        body_span(TS_MODULE, "bare", "operators/elementAt.ts")  # its body is on its braces' line


def test_a_brace_language_function_is_documented_by_the_comment_before_it() -> None:
    found = {f.name: f for f in functions(TS_MODULE, "m.ts")}
    assert found["elementAt"].documented and not found["half"].documented
    assert (found["elementAt"].statements, found["half"].statements) == (2, 1)


def test_each_npm_package_gets_its_own_workspace_folder() -> None:
    (spec,) = parse_regions("npm:@trpc/server@10.45.2:src:core/router.ts:createRouterFactory")
    assert spec == RegionSpec("npm:@trpc/server@10.45.2", "src", "core/router.ts", "createRouterFactory")
    assert (spec.name, spec.folder) == ("@trpc/server", "server")
    assert spec.id == "@trpc/server:core/router.ts:createRouterFactory"
    root, other = parse_regions("npm:lodash-es@4.17.21:.:clamp.js:clamp,npm:d3-array@3.2.4:src:sum.js:sum")
    assert (root.folder, other.folder) == ("lodash-es", "d3-array")
    # The Python ids are unchanged: they seed each region's key timings.
    assert REGIONS[0].id == "more-itertools:more.py:sliced"


def test_go_and_rust_regions_come_from_debian_packages_and_get_a_short_folder() -> None:
    go, rust = parse_regions(
        "deb:golang-github-spf13-cobra-dev=1.6.1-1:.:args.go:ExactArgs,"
        "deb:librust-semver-dev=1.0.14-1:src:parse.rs:parse"
    )
    assert go == RegionSpec("deb:golang-github-spf13-cobra-dev=1.6.1-1", ".", "args.go", "ExactArgs")
    assert (go.name, go.folder) == ("golang-github-spf13-cobra-dev", "spf13-cobra")
    assert (rust.name, rust.folder, rust.package) == ("librust-semver-dev", "semver", "src")
    with pytest.raises(ValueError, match="deb:name=version"):
        parse_regions("deb:librust-semver-dev:src:parse.rs:parse")  # no version


# --- the llama.vim-style peer ---------------------------------------------------------------

LINES = ["def f(x):", "    if x:", "        ret", "    return 0", ""]


def test_local_context_splits_the_cursor_line_into_middle_and_suffix() -> None:
    ctx = local_context(LINES, 11, 2, [], 0)
    assert ctx.prefix == "def f(x):\n    if x:\n"
    assert ctx.middle == "        ret"
    assert ctx.suffix == "\n    return 0\n\n"
    assert ctx.indent == 8


def test_a_blank_cursor_line_sends_an_empty_middle() -> None:
    ctx = local_context(["a", "    ", "b"], 4, 1, [], 0)
    assert (ctx.middle, ctx.indent) == ("", 0)


def test_speculative_context_is_the_context_after_accepting() -> None:
    after = local_context(["x = [", "    1,", "]"], 6, 1, [" 2,"], 0)
    assert after.middle == "    1, 2,"
    assert after.prefix == "x = [\n"


def test_cache_serves_the_rest_of_a_suggestion_the_user_types_through() -> None:
    cache = SuggestionCache()
    before = local_context(["    re", "x"], 6, 0, [], 0)
    cache.put(cache_key(before.prefix, before.middle, before.suffix), "turn y")
    assert lookup(cache, before) == "turn y"
    after = local_context(["    retu", "x"], 8, 0, [], 0)
    assert lookup(cache, after) == "rn y"
    wrong = local_context(["    rex", "x"], 7, 0, [], 0)
    assert lookup(cache, wrong) is None


def test_cache_is_lru_bounded() -> None:
    cache = SuggestionCache(size=2)
    cache.put("a", "1")
    cache.put("b", "2")
    cache.get("a")
    cache.put("c", "3")
    assert cache.get("b") is None and cache.get("a") == "1"


def test_render_drops_repeats_of_the_next_line_and_blank_suggestions() -> None:
    lines = ["def f():", "    ", "    return 0", ""]
    assert render(lines, 4, 1, "    return 0") is None
    assert render(lines, 4, 1, "   \n\n") is None
    assert render(lines, 4, 1, "    x = 1\n") == ["x = 1"]


def test_chunk_similarity() -> None:
    assert chunk_similarity(["a b c"], ["a b c"]) == 1.0
    assert chunk_similarity(["a b"], ["c d"]) == 0.0


def test_other_regions_are_named_on_the_command_line_and_malformed_ones_are_refused() -> None:
    specs = parse_regions("tomli==2.0.1:tomli:_parser.py:suffixed_err, a==1:a:b/c.py:f")
    assert specs == (
        RegionSpec("tomli==2.0.1", "tomli", "_parser.py", "suffixed_err"),
        RegionSpec("a==1", "a", "b/c.py", "f"),
    )
    bad_specs = ("tomli:_parser.py:suffixed_err", "tomli==2.0.1:tomli::f", "a==1:a:b.py:f:g", "npm:x:a:b:f")
    for bad in bad_specs:
        with pytest.raises(ValueError, match="expected name==version:package:module:function"):
            parse_regions(bad)


def test_held_out_regions_are_picked_by_the_rule_alone(tmp_path: Path) -> None:
    from bench.replay.pick import MAX_CHARS, MIN_CHARS, candidates

    body = "    x = 1\n" + "    y = x + 1\n" * ((MIN_CHARS + 20) // 14) + "    return y\n"
    fits = f'def fits():\n    """Doc."""\n{body}'
    undocumented = f"def bare():\n{body}"
    too_long = 'def long():\n    """Doc."""\n' + "    z = 0\n" * (MAX_CHARS // 10 + 5)
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "mod.py").write_text("\n".join([fits, undocumented, too_long]))
    (tmp_path / "pkg" / "test_mod.py").write_text(fits)
    assert candidates(tmp_path, "pkg") == [("mod.py", "fits")]


def test_npm_regions_come_from_the_package_sources_not_its_declarations(tmp_path: Path) -> None:
    from bench.replay.pick import MIN_CHARS, candidates

    body = "  let x = 1;\n" + "  x = x + 1;\n" * ((MIN_CHARS + 20) // 13) + "  return x;\n"
    fits = f"/** Doc. */\nexport function fits(): number {{\n{body}}}\n"
    for name in ("mod.ts", "mod.d.ts", "mod.min.js", "mod.test.ts", "mod.py"):
        (tmp_path / name).write_text(fits if name != "mod.py" else "")
    assert candidates(tmp_path, ".", kind="npm") == [("mod.ts", "fits")]
    assert candidates(tmp_path, ".", kind="npm", docstring=False) == [("mod.ts", "fits")]
    (tmp_path / "mod.ts").write_text(fits.replace("/** Doc. */\n", ""))
    assert candidates(tmp_path, ".", kind="npm") == []


def test_debian_regions_are_go_and_rust_functions_outside_tests(tmp_path: Path) -> None:
    from bench.replay.pick import MIN_CHARS, candidates

    go_body = "\tx := 1\n" + "\tx = x + 1\n" * ((MIN_CHARS + 20) // 11) + "\treturn x\n"
    go = f"package m\n\n// Fits is documented.\nfunc Fits() int {{\n{go_body}}}\n"
    rust_body = "    let mut x = 1;\n" + "    x += 1;\n" * ((MIN_CHARS + 20) // 11) + "    x\n"
    rust = f"/// Documented.\npub fn fits() -> i32 {{\n{rust_body}}}\n"
    (tmp_path / "m.go").write_text(go)
    (tmp_path / "m_test.go").write_text(go)
    (tmp_path / "lib.rs").write_text(rust)
    (tmp_path / "mod.py").write_text("")
    assert candidates(tmp_path, ".", kind="deb") == [("lib.rs", "fits"), ("m.go", "Fits")]
