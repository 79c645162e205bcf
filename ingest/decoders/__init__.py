"""Decoders, looked up by name (``decoder: chirpstack_v4`` in a route)."""
