"""Benchmarks: timing targets live here, never in the test suite. ``python -m bench`` runs them all."""
