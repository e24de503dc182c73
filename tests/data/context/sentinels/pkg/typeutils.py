"""Type helpers."""

__all__ = ["make_sentinel"]


def make_sentinel(name="_MISSING", var_name=None):
    """A new singleton object, printed as `name`, pickled by `var_name`."""

    class Sentinel:
        def __repr__(self):
            return var_name or name

    return Sentinel()
