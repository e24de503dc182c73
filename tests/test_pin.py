"""Expected values recorded from the code (server/actions/pin.py): which tests can be recorded,
what the observing variant reports when run, and the test it becomes."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from server.actions.pin import COMMENT, MARKER, observed, observing_variant, pinned, raised_to_value

WRONG = """def test_window_of_two():
    rows = list(sliding_window(2, [1, 2, 3]))
    assert rows == [(1, 2), (2, 4)]  # the model's miscount
    assert len(rows) == 2
    assert "é" == label(rows)
"""


def _run(variant: str, **names: object) -> str:
    """What the sandbox reports for the variant: the message of the AssertionError it raises."""
    env = dict(names)
    exec(compile(variant, "variant", "exec"), env)
    test = next(v for k, v in env.items() if k.startswith("test_"))
    with pytest.raises(AssertionError) as raised:
        test()
    return f"E   AssertionError: {raised.value}"


def test_a_wrong_expectation_is_replaced_by_what_the_code_returns() -> None:
    variant = observing_variant(WRONG)
    assert variant is not None
    message = _run(
        variant,
        sliding_window=lambda n, xs: zip(*(xs[i:] for i in range(n)), strict=False),
        label=lambda rows: "ü",
    )
    assert MARKER in message
    values = observed(message)
    assert values == ["[(1, 2), (2, 3)]", "2", "'ü'"]
    fixed = pinned(WRONG, values)
    assert fixed == (
        "def test_window_of_two():\n"
        f"    {COMMENT}\n"
        "    rows = list(sliding_window(2, [1, 2, 3]))\n"
        "    assert rows == [(1, 2), (2, 3)]  # the model's miscount\n"
        "    assert len(rows) == 2\n"  # right already: the model's spelling stays
        "    assert 'ü' == label(rows)\n"  # the literal on the left, past a non-ASCII one
    )


def test_a_raise_the_code_never_made_becomes_a_record_of_what_it_returns() -> None:
    # chunked (bench actions-10): asked for `strict=True`, the 1.5B expected ValueError from an
    # input that divides evenly; the branch the test reaches is the gap, the exception its guess.
    expects = (
        "def test_chunked_when_strict():\n"
        "    with pytest.raises(ValueError, match='divisible'):\n"
        "        list(chunked([1, 2, 3, 4], 2, strict=True))\n"
    )
    as_value = raised_to_value(expects)
    assert as_value == (
        "def test_chunked_when_strict():\n    assert list(chunked([1, 2, 3, 4], 2, strict=True)) == None\n"
    )
    variant = observing_variant(as_value)
    assert variant is not None
    values = observed(_run(variant, chunked=lambda xs, n, strict: iter([xs[:n], xs[n:]])))
    assert values is not None
    assert pinned(as_value, values) == (
        "def test_chunked_when_strict():\n"
        f"    {COMMENT}\n"
        "    assert list(chunked([1, 2, 3, 4], 2, strict=True)) == [[1, 2], [3, 4]]\n"
    )
    # More than one statement in the block, or two blocks: which one was meant is not known.
    assert raised_to_value(expects.replace("        list(", "        n = 2\n        list(")) is None
    twice = expects + "    with pytest.raises(ValueError):\n        chunked([1], 2, strict=True)\n"
    assert raised_to_value(twice) is None


def test_tests_whose_values_cannot_be_recorded_faithfully_are_left_alone() -> None:
    looped = "def test_a():\n    for x in (1, 2):\n        assert f(x) == 3\n"
    parametrised = "@pytest.mark.parametrize('x', [1, 2])\ndef test_b(x):\n    assert f(x) == 3\n"
    nothing_to_record = "def test_c():\n    assert f(1) in (2, 3)\n    assert f(1) == g(1)\n"
    raises = "def test_d():\n    with pytest.raises(ValueError):\n        f(-1)\n"
    for source in (looped, parametrised, nothing_to_record, raises):
        assert observing_variant(source) is None, source
    simple = "def test_e():\n    assert f(1) == 3\n"
    # A value that does not read back as a literal, a NaN, a data dump, or nothing changed.
    assert pinned(simple, ["<generator object f at 0x7f>"]) is None
    assert pinned(simple, ["nan"]) is None
    assert pinned(simple, [repr(list(range(100)))]) is None
    assert pinned(simple, ["3"]) is None
    assert pinned(simple, ["4"]) == f"def test_e():\n    {COMMENT}\n    assert f(1) == 4\n"
    # The variant failed on something else (an exception in the code): nothing was observed.
    assert observed("E   TypeError: unsupported operand type(s)") is None


def test_an_iterator_compared_with_a_list_is_compared_by_its_items() -> None:
    source = (
        "def test_intersperse():\n"
        "    assert intersperse('!', [1, 2]) == [1, '!', 2]\n"
        "    assert intersperse(None, [1, 2, 3], n=2) == (1, 2, 3, None)\n"
        "    assert list(intersperse(0, [5])) == [5]\n"
    )
    variant = observing_variant(source)
    assert variant is not None

    def intersperse(e: object, xs: list[object], n: int = 1) -> object:
        out: list[object] = []
        for i, x in enumerate(xs):
            if i and i % n == 0:
                out.append(e)
            out.append(x)
        return iter(out)

    values = observed(_run(variant, intersperse=intersperse))
    # `list(...)` the model wrote itself is read the same way (so that an endless one cannot hang).
    assert values == ["ITEMS:[1, '!', 2]", "ITEMS:[1, 2, None, 3]", "ITEMS:[5]"]
    fixed = pinned(source, values)
    # The first expectation was right: only `list(...)` is added, and the test is no record;
    # the second takes the code's items, as a tuple like the model's literal.
    assert fixed == (
        "def test_intersperse():\n"
        f"    {COMMENT}\n"
        "    assert list(intersperse('!', [1, 2])) == [1, '!', 2]\n"
        "    assert tuple(intersperse(None, [1, 2, 3], n=2)) == (1, 2, None, 3)\n"
        "    assert list(intersperse(0, [5])) == [5]\n"
    )
    only_list = pinned(source.split("\n")[0] + "\n" + source.split("\n")[1] + "\n", values[:1])
    assert only_list == "def test_intersperse():\n    assert list(intersperse('!', [1, 2])) == [1, '!', 2]\n"
    # An endless iterator is cut; the test then compares as many items as the model wrote (the
    # 1.5B on toolz' iterate: all six tests compared the generator itself with a list).
    counting = "def test_count():\n    assert count(1) == [1, 2, 3]\n"
    endless = observed(_run(observing_variant(counting) or "", count=lambda n: itertools.count(n)))
    assert endless is not None and endless[0].startswith("ITEMS:[1, 2, 3, 4")
    assert pinned(counting, endless) == (
        "def test_count():\n    assert list(itertools.islice(count(1), 3)) == [1, 2, 3]\n"
    )
    assert pinned("def test_count():\n    assert count(1) == []\n", endless) is None
    # The model's own `list(...)` around an endless generator (more-itertools' iterate, held out:
    # every test hung until the run's timeout): cut the same way, the model's items kept.
    listed = "def test_count():\n    assert list(count(1)) == [1, 2, 3]\n"
    endless = observed(_run(observing_variant(listed) or "", count=lambda n: itertools.count(n)))
    assert endless is not None and endless[0].startswith("ITEMS:[1, 2, 3, 4")
    assert pinned(listed, endless) == (
        "def test_count():\n    assert list(itertools.islice(count(1), 3)) == [1, 2, 3]\n"
    )


def test_an_expectation_named_before_the_assert_is_recorded_where_it_is_written() -> None:
    # The 1.5B's habit on more-itertools' idft: `expected = [...]`, then `assert f(x) == expected`.
    source = "def test_scale():\n    xs = [1, 2]\n    expected = [2, 5]\n    assert scale(xs) == expected\n"
    variant = observing_variant(source)
    assert variant is not None
    values = observed(_run(variant, scale=lambda xs: iter([2 * x for x in xs])))
    assert values == ["ITEMS:[2, 4]"]
    assert pinned(source, values) == (
        "def test_scale():\n"
        f"    {COMMENT}\n"
        "    xs = [1, 2]\n"
        "    expected = [2, 4]\n"
        "    assert list(scale(xs)) == expected\n"
    )
    # A name read twice, or assigned twice, stands for more than one expectation: left alone.
    read_twice = source + "    assert len(expected) == 2\n"
    twice = observed(_run(observing_variant(read_twice) or "", scale=lambda xs: iter([2 * x for x in xs])))
    assert twice is None  # `scale(xs) == expected` is left to fail as the model wrote it
    # Assigned again, the name stands for the literal last assigned before each read (colour's
    # sUCS converters, bench actions-39: `ICh = ...; expected = ...; assert ...` three times).
    pairs = source + "    expected = [3]\n    assert scale([1]) == expected\n"
    values = observed(_run(observing_variant(pairs) or "", scale=lambda xs: [2 * x for x in xs]))
    assert values == ["[2, 4]", "[2]"]
    assert pinned(pairs, values) == (
        "def test_scale():\n"
        f"    {COMMENT}\n"
        "    xs = [1, 2]\n"
        "    expected = [2, 4]\n"
        "    assert scale(xs) == expected\n"
        "    expected = [2]\n"
        "    assert scale([1]) == expected\n"
    )


def test_floating_point_noise_is_written_rounded_under_pytest_approx() -> None:
    source = (
        "def test_halves():\n"
        "    expected = [2, -2j, 0]\n"
        "    assert halves([1, -1j, 1e-17]) == expected\n"
        "    assert third(1.0) == 0.3\n"
        "    assert third(0.9) == 0.3\n"
    )
    variant = observing_variant(source)
    assert variant is not None

    def halves(xs: list[complex]) -> list[complex]:
        return [x * 0.5000000000000001 for x in xs]

    values = observed(_run(variant, halves=halves, third=lambda x: x / 3))
    assert values == [
        "[0.5000000000000001, -0.5000000000000001j, 5.000000000000001e-18]",
        "0.3333333333333333",
        "0.3",
    ]
    fixed = pinned(source, values)
    assert fixed == (
        "def test_halves():\n"
        f"    {COMMENT}\n"
        "    expected = pytest.approx([0.5, -0.5j, 0.0])\n"
        "    assert halves([1, -1j, 1e-17]) == expected\n"
        "    assert third(1.0) == pytest.approx(0.333333333333)\n"
        "    assert third(0.9) == 0.3\n"
    )
    # The written values hold: pytest.approx accepts the code's noisy values.
    env: dict[str, object] = {"pytest": pytest, "halves": halves, "third": lambda x: x / 3}
    exec(compile(fixed, "fixed", "exec"), env)
    env["test_halves"]()  # type: ignore[operator]
    # Noise inside a nested value cannot go under pytest.approx: the test is left failing.
    nested = "def test_pairs():\n    assert pairs() == [(1, 2)]\n"
    assert pinned(nested, ["[(1, 0.30000000000000004)]"]) is None


def _ucs(xyz: object) -> object:
    """colour-science's XYZ_to_UCS, the converter whose tests (bench actions-38) were dropped."""
    x, y, z = np.asarray(xyz, dtype=float)
    return np.array([2 / 3 * x, y, 1 / 2 * (-x + 3 * y + z)])


def test_numeric_checks_record_numpy_values_inside_the_models_own_comparison() -> None:
    # The 1.5B's checks of a numpy function: the expected array named before the assert, numpy's
    # assert functions as statements, math.isclose, each with miscalculated numbers.
    source = (
        "def test_ucs():\n"
        "    xyz = np.array([0.2, 0.1, 0.05])\n"
        "    expected = np.array([0.1376933, 0.1219722, 0.1053731])\n"
        "    assert np.allclose(XYZ_to_UCS(xyz), expected, atol=1e-9), 'the input, unchanged'\n"
        "    np.testing.assert_allclose(XYZ_to_UCS([1, 1, 1]), [0.5, 0.5, 0.5])\n"
        "    assert math.isclose(XYZ_to_UCS(xyz)[1], 0.1), 'Y stays'\n"
        "    assert XYZ_to_UCS(xyz)[0] == pytest.approx(0.3)\n"
    )
    variant = observing_variant(source)
    assert variant is not None
    values = observed(_run(variant, np=np, math=math, pytest=pytest, XYZ_to_UCS=_ucs))
    assert values is not None
    assert values[0].startswith("ARRAY:[0.13333333333333333, 0.1, ")
    assert values[1:] == ["ARRAY:[0.6666666666666666, 1.0, 1.5]", "0.1", "0.13333333333333333"]
    fixed = pinned(source, values)
    assert fixed == (
        "def test_ucs():\n"
        f"    {COMMENT}\n"
        "    xyz = np.array([0.2, 0.1, 0.05])\n"
        "    expected = np.array([0.1333333333, 0.1, 0.075])\n"
        # A recorded check loses the message that said what the model expected.
        "    assert np.allclose(XYZ_to_UCS(xyz), expected, atol=1e-9)\n"
        "    np.testing.assert_allclose(XYZ_to_UCS([1, 1, 1]), [0.6666666667, 1.0, 1.5])\n"
        "    assert math.isclose(XYZ_to_UCS(xyz)[1], 0.1), 'Y stays'\n"  # right: left as written
        "    assert XYZ_to_UCS(xyz)[0] == pytest.approx(0.1333333333)\n"
    )
    # The recorded test passes on the code and catches a changed coefficient.
    env: dict[str, object] = {"np": np, "math": math, "pytest": pytest, "XYZ_to_UCS": _ucs}
    exec(compile(fixed, "fixed", "exec"), env)
    env["test_ucs"]()  # type: ignore[operator]
    env["XYZ_to_UCS"] = lambda xyz: _ucs(xyz) * np.array([1.0, 1.0, 1.01])  # type: ignore[operator]
    with pytest.raises(AssertionError):
        env["test_ucs"]()  # type: ignore[operator]


def test_an_array_compared_with_a_list_is_compared_by_its_tolist() -> None:
    # A varied-input probe (`server.actions.reach`) is `assert call == []`: an array returned
    # there was a repr no literal reads (`array([...])`), so numpy functions kept no probe.
    probe = "def test_probe():\n    assert XYZ_to_UCS([1, 2, 3]) == []\n"
    values = observed(_run(observing_variant(probe) or "", XYZ_to_UCS=_ucs))
    assert values == ["ARRAY:[0.6666666666666666, 2.0, 4.0]"]
    fixed = pinned(probe, values)
    assert fixed == (
        "def test_probe():\n"
        f"    {COMMENT}\n"
        "    assert XYZ_to_UCS([1, 2, 3]).tolist() == pytest.approx([0.666666666667, 2.0, 4.0])\n"
    )
    env: dict[str, object] = {"pytest": pytest, "XYZ_to_UCS": _ucs}
    exec(compile(fixed, "fixed", "exec"), env)
    env["test_probe"]()  # type: ignore[operator]
    # A numpy scalar reads back as a plain number, and an expression takes parentheses.
    scalar = (
        "def test_sum():\n"
        "    assert np.sum(XYZ_to_UCS([1, 2, 3])) == 6\n"
        "    assert -XYZ_to_UCS([1, 2, 3]) == [0]\n"
    )
    values = observed(_run(observing_variant(scalar) or "", np=np, XYZ_to_UCS=_ucs))
    assert values == ["6.666666666666666", "ARRAY:[-0.6666666666666666, -2.0, -4.0]"]
    assert (pinned(scalar, values) or "").splitlines()[2:] == [
        "    assert np.sum(XYZ_to_UCS([1, 2, 3])) == pytest.approx(6.66666666667)",
        "    assert (-XYZ_to_UCS([1, 2, 3])).tolist() == pytest.approx([-0.666666666667, -2.0, -4.0])",
    ]
