"""Base classes for services."""


class Service:
    """A service with a name and a logger."""

    def log_event(self, event: str, **fields: object) -> None:
        """Record `event` with structured fields."""
        print(event, fields)
