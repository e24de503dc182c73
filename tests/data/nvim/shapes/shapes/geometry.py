"""Plane shapes and their measures."""

from dataclasses import dataclass


@dataclass
class Rectangle:
    width: float
    height: float

    def area(self) -> float:
        return self.width * self.height

    def perimeter(self) -> float:
        return 2 * (self.width + self.height)


@dataclass
class Circle:
    radius: float

    def area(self) -> float:
        return 3.141592653589793 * self.radius**2
