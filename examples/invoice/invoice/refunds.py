"""Refunds: taking items back off an invoice. The demo completes the empty body below."""

from invoice.models import Invoice, LineItem


def refund_item(invoice: Invoice, sku: str) -> LineItem:
    """Remove the first line item with this SKU from the invoice and return it; KeyError if none."""
    
