"""Sales tax by region."""

TAX_RATES = {"EU": 0.20, "UK": 0.20, "US-CA": 0.0725, "US-OR": 0.0}


class UnknownRegion(ValueError):
    """The region has no tax rate on file."""


def tax_rate(region: str) -> float:
    """The tax rate of a region; raises UnknownRegion for regions not on file."""
    try:
        return TAX_RATES[region]
    except KeyError:
        raise UnknownRegion(region) from None


def apply_tax(net_cents: int, region: str) -> int:
    """Gross amount in cents: net plus the region's tax, rounded to the cent."""
    return round(net_cents * (1 + tax_rate(region)))
