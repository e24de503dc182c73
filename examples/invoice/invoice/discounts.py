"""Discounts on invoices. The demo completes the `return` line: it is half-typed on purpose."""

from invoice.models import Invoice
from invoice.tax import apply_tax


def discount_rate(invoice: Invoice) -> float:
    """10% off invoices of five items or more."""
    return 0.10 if len(invoice.items) >= 5 else 0.0


def discounted_gross(invoice: Invoice) -> int:
    """Gross total in cents after the discount: the discount applies before tax."""
    net = round(invoice.net_cents() * (1 - discount_rate(invoice)))
    return 
