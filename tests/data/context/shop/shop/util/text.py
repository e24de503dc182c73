"""Text helpers."""


def slugify(value: str) -> str:
    """Lower-case `value` and join its words with dashes."""
    return "-".join(value.lower().split())
