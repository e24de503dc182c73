"""Unit conversions."""

CM_PER_INCH = 2.54


def inches_to_cm(inches):
    return inches * CM_PER_INCH


def cm_to_inches(cm):
    return cm / CM_PER_INCH
