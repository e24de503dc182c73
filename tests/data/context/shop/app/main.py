"""Checkout flow: uses the shop package through several import styles."""

import shop.util.text
import shop.models as m
from shop import Cart
from shop.base import Service
from shop.pricing import apply_discount as disc
from shop.util import text as t


class Checkout(Service):
    def run(self, owner: str) -> float:
        cart = Cart(owner)
        cart.add(m.Item("tea", 3.5))
        self.log_event("checkout", owner=owner)
        slug = shop.util.text.slugify(owner)
        return disc(cart.total(), 10) + len(t.slugify(slug))
