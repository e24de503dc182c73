"""Domain objects of the shop."""

from dataclasses import dataclass

from .pricing import apply_discount

TAX_RATE = 0.2


@dataclass
class Item:
    """Something to buy."""

    name: str
    price: float


class Cart:
    """A shopping cart that belongs to one customer."""

    def __init__(self, owner: str) -> None:
        self.owner = owner
        self.lines: list[tuple[Item, int]] = []

    def add(self, item: Item, quantity: int = 1) -> None:
        """Add `quantity` units of `item` to the cart."""
        self.lines.append((item, quantity))

    def total(self, discount_percent: float = 0.0) -> float:
        """Price of everything in the cart, tax included, after the discount."""
        subtotal = sum(item.price * quantity for item, quantity in self.lines)
        return apply_discount(subtotal, discount_percent) * (1 + TAX_RATE)
