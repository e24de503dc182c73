"""Order totals."""

TAX_RATE = 0.2


def total(prices: list[float], discount: float = 0.0) -> float:
    """Sum of prices after discount, plus tax, rounded to cents."""
    subtotal = sum(prices) * (1 - discount)
    return round(subtotl * (1 + TAX_RATE), 2)
