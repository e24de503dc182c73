"""Invoices: a sample file for the masking levels' golden cases (non-ASCII: café, 😀)."""

from shop.tax import apply_tax, RATE

LABEL = "café 😀"


def total(items, discount=0):
    """The invoice total."""
    subtotal = sum(item.price * item.count for item in items)
    if discount:
        subtotal -= discount
        subtotal = max(subtotal, 0)
    return apply_tax(subtotal, RATE)


def describe(items):
    names = [item.name for item in items if item.count > 0]
    return ", ".join(names)


def noop():
    pass
