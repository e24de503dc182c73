"""A package whose modules share a convention: sentinels made by one helper."""
