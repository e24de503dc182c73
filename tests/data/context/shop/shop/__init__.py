"""A tiny shop: the public API is re-exported here."""

from .models import Cart, Item
from .pricing import *

__all__ = ["Cart", "Item", "apply_discount"]
