from intervals import merge


def test_merge_overlapping():
    assert merge([(1, 3), (2, 6), (8, 10)]) == [(1, 6), (8, 10)]


def test_merge_touching_intervals():
    assert merge([(1, 4), (4, 5)]) == [(1, 5)]


def test_merge_empty():
    assert merge([]) == []
