"""Caches."""

from .typeutils import make_sentinel

_MISSING = make_sentinel(var_name="_MISSING")


class Cache:
    def __init__(self, registry):
        self.registry = registry
        self.marker = registry.make_sentinel("attribute call, not the imported helper")

    def get(self, key, default=_MISSING):
        return self.registry.get(key, default)
