"""Plain-text summaries of invoices."""

from invoice.models import Invoice
from invoice.tax import apply_tax


def format_cents(cents: int) -> str:
    return f"{cents / 100:.2f}"


def summarize(invoice: Invoice) -> str:
    """One line per item, then the net and gross totals."""
    lines = [f"Invoice for {invoice.customer} ({invoice.region})"]
    for item in invoice.items:
        lines.append(f"  {item.sku} x{item.quantity}: {format_cents(item.subtotal_cents())}")
    net = invoice.net_cents()
    gross = apply_tax(net, invoice.region)
    lines.append(f"  net {format_cents(net)}, gross {format_cents(gross)}")
    return "\n".join(lines)
