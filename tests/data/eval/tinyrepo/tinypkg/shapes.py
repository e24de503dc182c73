"""Rectangles measured in inches, reported in centimetres."""

from tinypkg.units import cm_to_inches, inches_to_cm


class Rectangle:
    def __init__(self, width, height):
        self.width = width
        self.height = height

    def area(self):
        return self.width * self.height

    def perimeter(self):
        return 2 * (self.width + self.height)

    def width_cm(self):
        return inches_to_cm(self.width)


def from_cm(width_cm, height_cm):
    width = cm_to_inches(width_cm)
    height = cm_to_inches(height_cm)
    return Rectangle(width, height)


def largest(rectangles):
    best = None
    for rect in rectangles:
        if best is None or rect.area() > best.area():
            best = rect
    return best
