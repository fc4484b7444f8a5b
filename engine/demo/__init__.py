"""The demo shop: a realistic holiday season for an EE/RO/US gift shop, generated from a seed.

``generate_demo_shop(engine, contacts=N, seed=S, season=YEAR, clock=clock)`` writes it;
``tidings demo-data`` is its command line.
"""

from engine.demo.load import DEFAULT_SEED, DemoDataError, DemoSummary, default_season, generate_demo_shop
from engine.demo.shop import DemoRows, ShopBuilder, ids_for

__all__ = [
    "DEFAULT_SEED",
    "DemoDataError",
    "DemoRows",
    "DemoSummary",
    "ShopBuilder",
    "default_season",
    "generate_demo_shop",
    "ids_for",
]
