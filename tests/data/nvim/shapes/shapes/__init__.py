"""Plane shapes and text reports about them."""
