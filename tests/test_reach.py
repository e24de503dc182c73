"""Varied inputs for cases no test reaches (server/actions/reach.py), without a sandbox."""

from __future__ import annotations

import ast

from server.actions.reach import (
    choose,
    probe_calls,
    probe_test,
    raised,
    replacements,
    seeds_of,
    setup_calls,
    standalone_calls,
)


def _args(*texts: str) -> list[ast.expr]:
    return [ast.parse(t, mode="eval").body for t in texts]


def test_replacements_try_the_boundaries_of_the_arguments_kind_first_then_other_kinds() -> None:
    assert replacements(_args("5", "2"), 0) == [0, 1, -1, 2, 6, 4, 10, -5, None, "x"]
    assert replacements(_args("'ab'"), 0)[:4] == ["", " ", "x", "not valid"]
    assert replacements(_args("True"), 0, other_types=False) == [False]
    # A value equal to the argument is never a variant; 1 == True does not count as equal.
    assert 1 not in replacements(_args("1"), 0) and replacements(_args("[1, 2]"), 0)[:3] == [[], [1], [2, 1]]


def test_a_call_runs_alone_only_when_its_arguments_name_nothing_the_test_assigns() -> None:
    test = (
        "def test_x(tmp_path):\n"
        "    addr = '10.0.0.1'\n"
        "    got = ip2hex(addr)\n"
        "    assert got == '0a000001'\n"
        "    assert iptools.ipv4.ip2hex(make(), int, dict()) is None\n"
        "    obj = make()\n"
        "    assert ip2hex(obj) is None and ip2hex(str(tmp_path)) is None\n"
    )
    calls = [ast.unparse(c) for c in standalone_calls(test, "ip2hex")]
    # `addr` is bound to a literal, read as its value; `obj` and the fixture stay in the test.
    assert calls == ["ip2hex('10.0.0.1')", "iptools.ipv4.ip2hex(make(), int, dict())"]


def test_probes_vary_each_call_in_turn_and_pass_a_literal_default_the_tests_leave_out() -> None:
    tests = [
        "def test_a():\n    assert f(3) == 4\n",
        "def test_b():\n    assert f(3) == 4\n    assert f(7) == 8\n",
    ]
    calls = probe_calls(tests, "f", "def f(n, strict=False):\n    return n + 1\n")
    assert calls[:2] == ["f(0)", "f(1)"]  # turns: one variant of f(3), then one of f(7), ...
    assert "f(3, strict=True)" in calls and "f(3)" not in calls and len(calls) == len(set(calls))


GRASHOF = (
    "def grashof(L, beta, T1, T2=0, rho=None, mu=None, nu=None, g=9.8):\n"
    "    if rho is not None and mu is not None:\n"
    "        nu = mu / rho\n"
    "    elif nu is None:\n"
    "        raise ValueError('rho and mu, or nu')\n"
    "    if mode in ('a', 'b') or 3 < L:\n"
    "        return 0\n"
    "    return g * beta * abs(T2 - T1) * L**3 / nu**2\n"
)


def test_the_values_a_function_compares_its_parameters_with_are_tried_first_alone_and_in_pairs() -> None:
    seeds = seeds_of(GRASHOF, "grashof")
    assert seeds.values == {"rho": [None], "mu": [None], "nu": [None], "L": [3, 2, 4]}
    assert seeds.together == [frozenset({"rho", "mu", "nu"})]  # `mode` is no parameter
    # fluids' Grashof (actions-35): the model's tests pass all seven arguments; varied one value
    # of each kind at a time, argument after argument, the cap was spent before `rho`, and its
    # raise needs two of them None at once.
    test = "def test_g():\n    assert grashof(0.9, 0.001, 178.2, 378.2, 1.16, 1.9e-05, 1.6e-05) == 1.0\n"
    probes = probe_calls([test], "grashof", GRASHOF)
    assert probes[:4] == [
        "grashof(3, 0.001, 178.2, 378.2, 1.16, 1.9e-05, 1.6e-05)",
        "grashof(2, 0.001, 178.2, 378.2, 1.16, 1.9e-05, 1.6e-05)",
        "grashof(4, 0.001, 178.2, 378.2, 1.16, 1.9e-05, 1.6e-05)",
        "grashof(0.9, 0.001, 178.2, 378.2, None, 1.9e-05, 1.6e-05)",
    ]
    assert "grashof(0.9, 0.001, 178.2, 378.2, 1.16, None, None)" in probes
    # Then every argument gets its kind's first boundary before any gets its second.
    assert "grashof(0.9, 0.001, 178.2, 378.2, 1.16, 1.9e-05, 0.0)" in probes


def test_the_fewest_probes_that_close_the_gaps_are_chosen() -> None:
    reached = {"p0": {(1, 2)}, "p1": {(1, 2), (3, 4)}, "p2": {(5, 6)}, "p3": set()}
    assert choose(reached, {(1, 2), (3, 4), (5, 6), (7, 8)}) == ["p1", "p2"]


def test_only_a_builtin_exception_that_is_not_an_assertion_is_read_from_a_failure() -> None:
    assert raised("    ip2hex(None)\nE   TypeError: not a string\n") == "TypeError"
    assert raised("E   iptools.InvalidAddress: 10.x\n") is None  # would need an import
    assert raised("E   AssertionError: INFILLER-OBSERVED['1']") is None
    assert raised("E   KeyboardInterrupt") is None
    assert raised("E   NameError: name 'make' is not defined") is None  # the probe's own fault


def test_a_call_of_what_the_test_built_comes_with_the_statements_that_build_it() -> None:
    test = (
        "def test_x():\n"
        "    class Sub(dict):\n"
        "        pass\n"
        "    obj = Sub(a=1)\n"
        "    assert name_of(obj) == 'Sub'\n"
        "    other = name_of(Sub)\n"
        "    assert name_of(other) == 'x'\n"
    )
    found = [
        ([ast.unparse(s).splitlines()[0] for s in setup], ast.unparse(call))
        for setup, call in setup_calls(test, "name_of")
    ]
    # Asserts and statements that call the function are never setup, so `other`, which only a
    # call of the function builds, leaves its call out.
    built = ["class Sub(dict):", "obj = Sub(a=1)"]
    assert found == [(built, "name_of(obj)"), (built, "name_of(Sub)")]
    # A class the test defines is the test's: a call of it does not run alone.
    assert standalone_calls(test, "name_of") == []
    # A fixture cannot follow a call out of its test.
    assert setup_calls("def test_y(tmp_path):\n    p = tmp_path\n    assert f(p)\n", "f") == []


def test_probes_of_a_built_input_vary_the_object_by_kind_and_the_values_it_is_built_from() -> None:
    test = "def test_x():\n    obj = Box('ab', 2)\n    assert size(obj) == 2\n"
    probes = probe_calls([test], "size", "def size(box):\n    return box.n\n")
    assert "obj = Box('ab', 2)\nsize(None)" in probes and "obj = Box('ab', 2)\nsize({})" in probes
    assert "obj = Box('', 2)\nsize(obj)" in probes and "obj = Box('ab', 0)\nsize(obj)" in probes
    source = probe_test("test_p", "obj = Box('', 2)\nsize(obj)")
    assert source == "def test_p():\n    obj = Box('', 2)\n    assert size(obj) == []\n"
    compile(source, "probe", "exec")
