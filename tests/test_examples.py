"""A docstring's examples as one pytest test (server/actions/examples.py)."""

from __future__ import annotations

import pytest

from server.actions.examples import docstring_test


def test_examples_become_asserts_in_order_with_their_setup() -> None:
    doc = """Chunks of n.

    >>> from itertools import islice
    >>> it = iter(range(5))
    >>> list(chunked(it, 2))
    [[0, 1], [2, 3], [4]]
    >>> is_empty([])
    True
    >>> Point(1, 2)
    Point(x=1, y=2)
    >>> chunked(None, 2)
    Traceback (most recent call last):
      ...
    TypeError: 'NoneType' object is not iterable
    >>> print("two words")
    two words
    """
    assert docstring_test("test_chunked_docstring_examples", doc) == (
        "def test_chunked_docstring_examples():\n"
        "    from itertools import islice\n"
        "    it = iter(range(5))\n"
        "    assert (list(chunked(it, 2))) == [[0, 1], [2, 3], [4]]\n"
        "    assert (is_empty([])) is True\n"
        "    assert repr(Point(1, 2)) == 'Point(x=1, y=2)'\n"
        "    with pytest.raises(TypeError):\n"
        "        chunked(None, 2)\n"
        '    print("two words")\n'
    )


@pytest.mark.parametrize(
    "doc",
    [
        "No examples at all.",
        ">>> x = 1\n>>> f(x)\n",  # nothing to check
        ">>> f(1)  # doctest: +SKIP\n2\n",
    ],
)
def test_examples_that_check_nothing_make_no_test(doc: str) -> None:
    assert docstring_test("test_f_docstring_examples", doc) is None


def test_outputs_doctest_matches_loosely_run_without_an_assert() -> None:
    doc = ">>> f(1)  # doctest: +ELLIPSIS\n[1, ...]\n>>> g()\n<G at 0x7f00>\n>>> f(2)\n3\n"
    assert docstring_test("test_f_docstring_examples", doc) == (
        "def test_f_docstring_examples():\n    f(1)\n    g()\n    assert (f(2)) == 3\n"
    )
