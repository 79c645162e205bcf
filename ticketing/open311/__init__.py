"""Open311 GeoReport v2: the client, response parsing and writing, and sense311's own server."""

__all__: list[str] = []
