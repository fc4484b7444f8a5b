"""Tidings: a marketing automation engine for online shops.

Layering (lower never imports higher):
settings/clock → store, workspace → audience, render, channels → runtime → scheduler, web → cli.
"""

__version__ = "0.1.0"
