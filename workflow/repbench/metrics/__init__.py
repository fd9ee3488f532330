"""Metric families: pure functions on arrays, one module per family, each with a registry at the bottom."""
