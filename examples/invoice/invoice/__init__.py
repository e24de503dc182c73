from invoice.models import Invoice, LineItem
from invoice.tax import apply_tax

__all__ = ["Invoice", "LineItem", "apply_tax"]
