"""Money arithmetic."""

__all__ = ["apply_discount"]


def apply_discount(amount: float, percent: float) -> float:
    """Reduce `amount` by `percent` percent."""
    return amount * (1 - percent / 100)


def _round_cents(amount: float) -> float:
    return round(amount, 2)
