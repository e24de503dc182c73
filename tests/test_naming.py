"""Generated tests the model named `test_1` get a name that says which case they check."""

from __future__ import annotations

from server.actions.naming import case_name, descriptive_names, is_generic

CLAMP = """def clamp(x, lo=0, hi=10):
    if x < lo:
        return lo
    if x > hi and not hi < 0:
        return hi
    return x
"""


def test_only_names_that_say_nothing_beyond_the_target_are_generic() -> None:
    for name in ("test_1", "test_clamp", "test_clamp_2", "test_case_3", "test_example"):
        assert is_generic(name, "clamp"), name
    for name in ("test_clamp_above_range", "test_empty", "test_negative_bounds"):
        assert not is_generic(name, "clamp"), name


def test_a_test_is_named_after_the_branch_it_alone_takes() -> None:
    arcs = {
        "test_1": {(2, 3)},  # below lo
        "test_2": {(2, 4), (4, 5)},  # above hi
        "test_3": {(2, 4), (4, 6)},  # inside
        "test_in_range": {(2, 4), (4, 6)},
    }
    tests = [(name, f"def {name}():\n    assert clamp(5) == 5\n") for name in arcs]
    names = descriptive_names(tests, "clamp", CLAMP, arcs)
    assert names == {
        "test_1": "test_clamp_when_x_lt_lo",
        "test_2": "test_clamp_when_x_gt_hi_and_not_hi_lt_0",
        "test_3": "test_clamp_when_not_x_gt_hi_and_not_hi_lt_0",
    }
    # A branch already named after goes to the next branch, else the call.
    arcs = {"test_1": {(2, 3)}, "test_2": {(2, 3)}}
    tests = [(name, f"def {name}():\n    assert clamp(-5) == 0\n") for name in arcs]
    assert descriptive_names(tests, "clamp", CLAMP, arcs) == {
        "test_1": "test_clamp_when_x_lt_lo",
        "test_2": "test_clamp_minus_5",
    }


def test_without_a_branch_of_its_own_a_test_is_named_after_its_call() -> None:
    source = "def merge(intervals, strict=False):\n    return sorted(intervals)\n"
    tests = [
        ("test_merge_1", "def test_merge_1():\n    assert merge([]) == []\n"),
        ("test_merge_2", "def test_merge_2():\n    assert merge([(1, 2)], strict=True) == [(1, 2)]\n"),
        (
            "test_merge_3",
            "def test_merge_3():\n    with pytest.raises(TypeError):\n        merge(None)\n",
        ),
        ("test_4", "def test_4():\n    assert merge(-3) == -3\n"),
        ("test_5", "def test_5():\n    assert merge([]) == []\n"),
        ("test_6", "def test_6():\n    assert 1 == 1\n"),
    ]
    names = descriptive_names(tests, "merge", source, {})
    assert names == {
        "test_merge_1": "test_merge_empty_list",
        "test_merge_2": "test_merge_strict_true",
        "test_merge_3": "test_merge_none_raises_type_error",
        "test_4": "test_merge_minus_3",
        "test_5": "test_merge_empty_list_2",
    }


def test_a_long_condition_is_cut_at_a_word() -> None:
    source = (
        "def f(a):\n"
        "    if a.first_value > a.second_value and a.third_value < a.fourth_value:\n"
        "        return 1\n"
    )
    names = descriptive_names([("test_1", "def test_1():\n    f(x)\n")], "f", source, {"test_1": {(2, 3)}})
    assert names["test_1"] == "test_f_when_a_first_value_gt_a_second_value_and"


def test_a_branch_on_a_local_is_named_after_the_parameters_it_stands_for() -> None:
    source = "def poly(cs, x):\n    n = len(cs)\n    if n == 0:\n        return x * 0\n    return n\n"
    assert case_name("poly", source, (3, 4)) == "test_poly_when_len_cs_eq_0"
