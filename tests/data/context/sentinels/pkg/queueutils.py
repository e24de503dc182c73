"""Queues."""

from .typeutils import make_sentinel

_REMOVED = make_sentinel(var_name="_REMOVED")


def pop(entries):
    while entries:
        entry = entries.pop()
        if entry is not _REMOVED:
            return entry
    return None
