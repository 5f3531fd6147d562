"""Datasets: loading (load.py), formats, the built-in data, cleaning, deduplication, PII scrubbing."""
