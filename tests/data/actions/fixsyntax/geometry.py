"""Plane geometry helpers."""

import math


def distance(a: tuple[float, float], b: tuple[float, float]) -> float:
    """Euclidean distance between two points."""
    dx = b[0] - a[0]
    dy = b[1] - a[1]
    return math.sqrt(dx * dx + dy * dy


def perimeter(points: list[tuple[float, float]]) -> float:
    """Length of the closed polygon through `points`."""
    total = 0.0
    for i, p in enumerate(points):
        total += distance(p, points[(i + 1) % len(points)])
    return total
