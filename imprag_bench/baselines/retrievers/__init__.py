"""Retrievers for the explicit-query baselines: `search(queries: list[str], k) -> list[list[passage id]]`."""
