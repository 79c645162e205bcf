"""Incidents, the outbox and the Open311 GeoReport v2 client and server."""
