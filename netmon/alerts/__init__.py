"""Alerts: detectors, the manager that turns findings into events, and sinks."""
