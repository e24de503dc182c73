"""Small statistics helpers (test data for end-to-end completion tests)."""


def fibonacci(n: int) -> int:
    if n < 2:
        return n
    return fibonacci(n - 1) + fibonacci(n - 2)


def mean(values: list[float]) -> float:
    """Arithmetic mean; raises ValueError on an empty list."""
    if not values:
        raise ValueError("mean of an empty list")
    return sum(values) / len(values)


def clamp(value: float, low: float, high: float) -> float:
    """Limit value to the closed interval [low, high]."""
    return max(low, min(value, high))
