"""Metrics for Prometheus (`--serve`)."""
