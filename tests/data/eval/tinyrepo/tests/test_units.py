from tinypkg.units import cm_to_inches, inches_to_cm


def test_round_trip():
    assert cm_to_inches(inches_to_cm(3.0)) == 3.0
