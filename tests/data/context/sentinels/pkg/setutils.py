"""Sets: the module being written (the sentinel's line is typed in the tests)."""

from .typeutils import make_sentinel

_MISSING = make_sentinel(var_name="_MISSING")


class IndexedSet:
    def __init__(self, other=None):
        self.items = list(other or [])

    def pop(self, index=_MISSING):
        return self.items.pop() if index is _MISSING else self.items.pop(index)
