"""The demo shop's fixed facts: markets, products, and the vocabulary of its data.

Kept apart from the generator so that what the shop *is* (a Nordic gift shop selling in
Estonia, Romania and the US) reads as plain data, and the generator only decides *how
much* of it each customer gets.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal


@dataclass(frozen=True, slots=True)
class Market:
    """One country the shop sells to, with the weights the generator draws from."""

    country: str
    share: float  # of customers
    faker_locale: str
    locales: tuple[tuple[str | None, float], ...]  # contact.locale values and weights (None: unknown)
    zones: tuple[tuple[str, float], ...]
    currencies: tuple[tuple[str, float], ...]
    cities: tuple[str, ...]
    carriers: dict[str, str]  # shipping method -> carrier
    transit_days: dict[str, tuple[int, int]]  # shipping method -> (min, max) days in transit


MARKETS: tuple[Market, ...] = (
    Market(
        country="EE",
        share=0.35,
        faker_locale="et_EE",
        locales=(("et", 0.86), ("en", 0.1), (None, 0.04)),
        zones=(("Europe/Tallinn", 1.0),),
        currencies=(("EUR", 1.0),),
        cities=("Tallinn", "Tartu", "Pärnu", "Narva", "Viljandi", "Rakvere", "Haapsalu", "Kuressaare"),
        carriers={"standard": "Omniva", "express": "DPD"},
        transit_days={"standard": (2, 4), "express": (1, 1)},
    ),
    Market(
        country="RO",
        share=0.40,
        faker_locale="ro_RO",
        locales=(("ro", 0.84), ("ro-RO", 0.08), ("en", 0.05), (None, 0.03)),
        zones=(("Europe/Bucharest", 1.0),),
        currencies=(("RON", 0.6), ("EUR", 0.4)),
        cities=("București", "Cluj-Napoca", "Iași", "Timișoara", "Constanța", "Brașov", "Sibiu", "Oradea"),
        carriers={"standard": "FAN Courier", "express": "Sameday"},
        transit_days={"standard": (2, 5), "express": (1, 2)},
    ),
    Market(
        country="US",
        share=0.25,
        faker_locale="en_US",
        locales=(("en", 0.9), ("en-US", 0.06), (None, 0.04)),
        zones=(("America/New_York", 0.5), ("America/Chicago", 0.25), ("America/Los_Angeles", 0.25)),
        currencies=(("USD", 1.0),),
        cities=("New York", "Brooklyn", "Chicago", "Austin", "Seattle", "Portland", "Boston", "Los Angeles"),
        carriers={"standard": "USPS", "express": "UPS"},
        transit_days={"standard": (3, 7), "express": (1, 3)},
    ),
)

# Prices are set in EUR; other currencies use these rates and round to the shop's price points.
RATES = {"EUR": Decimal("1"), "RON": Decimal("4.97"), "USD": Decimal("1.08")}


@dataclass(frozen=True, slots=True)
class Product:
    sku: str
    name: str
    category: str
    price_eur: Decimal


PRODUCTS: tuple[Product, ...] = tuple(
    Product(sku, name, category, Decimal(price))
    for sku, name, category, price in (
        ("KN-101", "Merino wool scarf", "knitwear", "49.00"),
        ("KN-102", "Nordic pattern mittens", "knitwear", "29.00"),
        ("KN-103", "Chunky knit beanie", "knitwear", "25.00"),
        ("KN-104", "Wool blanket, forest green", "knitwear", "119.00"),
        ("CA-201", "Pine & cedar soy candle", "candles", "22.00"),
        ("CA-202", "Advent candle set", "candles", "34.00"),
        ("CA-203", "Beeswax taper candles (4)", "candles", "18.00"),
        ("CE-301", "Stoneware mug, glazed", "ceramics", "19.00"),
        ("CE-302", "Hand-thrown serving bowl", "ceramics", "59.00"),
        ("CE-303", "Ceramic tree ornaments (6)", "ceramics", "27.00"),
        ("TO-401", "Wooden train set", "toys", "64.00"),
        ("TO-402", "Felt reindeer plush", "toys", "21.00"),
        ("TO-403", "Memory card game", "toys", "16.00"),
        ("BO-501", "Nordic Christmas cookbook", "books", "32.00"),
        ("BO-502", "Illustrated winter tales", "books", "24.00"),
        ("JE-601", "Silver snowflake pendant", "jewellery", "79.00"),
        ("JE-602", "Amber stud earrings", "jewellery", "45.00"),
        ("HO-701", "Linen table runner", "home", "39.00"),
        ("HO-702", "Sheepskin seat pad", "home", "55.00"),
        ("HO-703", "Brass star lantern", "home", "68.00"),
        ("KI-801", "Gingerbread cutter set", "kitchen", "14.00"),
        ("KI-802", "Mulled wine spice kit", "kitchen", "17.00"),
        ("KI-803", "Birch cutting board", "kitchen", "36.00"),
        ("OU-901", "Thermal flask, 750 ml", "outdoors", "42.00"),
        ("OU-902", "Wool hiking socks (2 pairs)", "outdoors", "26.00"),
    )
)

CATEGORIES: tuple[str, ...] = tuple(sorted({product.category for product in PRODUCTS}))

GIFT_CARD_AMOUNTS_EUR: tuple[Decimal, ...] = tuple(Decimal(v) for v in ("25", "50", "75", "100", "150"))

EMAIL_DOMAINS: tuple[str, ...] = ("example.com", "example.net", "example.org")  # RFC 2606: never real inboxes

PROBLEMS: dict[str, str] = {
    "late": "arrived after the promised delivery date",
    "damaged": "parcel arrived damaged",
    "lost": "carrier lost the parcel",
}
RETURN_REASONS: tuple[str, ...] = (
    "changed_mind",
    "wrong_size",
    "not_as_described",
    "duplicate_gift",
    "damaged",
)
EXCHANGE_REASONS: tuple[str, ...] = ("wrong_size", "wrong_colour", "duplicate_gift", "prefer_other_item")

# Wording versions of the consent checkbox, by the year the version went live.
EMAIL_WORDING = ((2023, "email-2023-03"), (2025, "email-2025-05"))
X_WORDING = ((2024, "x-2024-09"),)

# What gift-card buyers write on the card, by the recipient's language (some notes span lines).
GIFT_MESSAGES: dict[str, tuple[str, ...]] = {
    "en": (
        "Merry Christmas! Treat yourself to something cosy.",
        "Happy holidays!\nWith love, from all of us",
        "For the person who is impossible to shop for :)",
        "Thank you for this year. Pick something warm!",
        "Something for the long winter evenings.\nHugs",
    ),
    "ro": (
        "Crăciun fericit! Alege ceva călduros pentru tine.",
        "Sărbători fericite!\nCu drag, de la noi toți",
        "Pentru cineva căruia e imposibil să-i alegi un cadou :)",
        "Mulțumesc pentru anul acesta. Răsfață-te!",
    ),
    "et": (
        "Häid jõule! Vali endale midagi hubast.",
        "Rahulikke pühi!\nSoojade soovidega",
        "Sulle, kellele on võimatu kingitust valida :)",
        "Aitäh selle aasta eest. Vali midagi sooja!",
    ),
}
# Claims a shop's support opens, and how they end (codes, as a shop's helpdesk sends them).
CLAIM_RESOLUTIONS: dict[str, tuple[tuple[str, float], ...]] = {
    "damaged": (("replacement", 60), ("refund", 40)),
    "lost": (("reshipped", 55), ("refund", 45)),
    "late": (("store_credit", 70), ("refund", 30)),
    "defective": (("replacement", 70), ("refund", 30)),
    "gift_card_not_received": (("resent", 100),),
}
