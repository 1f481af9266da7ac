"""Benchmarks of the project (run as modules, e.g. ``python -m bench.event_bus``)."""
