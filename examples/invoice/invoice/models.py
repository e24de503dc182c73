"""Invoices and their line items."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class LineItem:
    """One product on an invoice."""

    sku: str
    unit_price_cents: int
    quantity: int = 1

    def subtotal_cents(self) -> int:
        """Price of the line before tax."""
        return self.unit_price_cents * self.quantity


@dataclass
class Invoice:
    """A customer's invoice: line items and the region that decides the tax."""

    customer: str
    region: str
    items: list[LineItem] = field(default_factory=list)

    def add(self, item: LineItem) -> None:
        self.items.append(item)

    def net_cents(self) -> int:
        """Sum of all line subtotals, before tax."""
        return sum(item.subtotal_cents() for item in self.items)
