"""Text summaries of shapes."""

from shapes.geometry import Rectangle


def describe(rect: Rectangle) -> str:
    """One line about a rectangle: its size and area."""
    return f"{rect.width} x {rect.height}: area {rect.area()}"


def total_area(rects: list[Rectangle]) -> float:
    """The summed area of all rectangles."""
    return 0.0  # TODO


def tallest(rects: list[Rectangle]) -> Rectangle:
    """The rectangle with the largest height."""
    return rects[0]  # TODO
