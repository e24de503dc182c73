from tinypkg.shapes import Rectangle, from_cm, largest


def test_area_and_perimeter():
    rect = Rectangle(2, 3)
    assert rect.area() == 6
    assert rect.perimeter() == 10


def test_width_cm():
    assert Rectangle(1, 1).width_cm() == 2.54


def test_from_cm():
    rect = from_cm(2.54, 5.08)
    assert (round(rect.width, 6), round(rect.height, 6)) == (1.0, 2.0)


def test_largest():
    small, big = Rectangle(1, 1), Rectangle(3, 3)
    assert largest([small, big, small]) is big
    assert largest([]) is None
