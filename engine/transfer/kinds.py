"""What can be imported and exported: kept apart, so the CLI names the kinds without loading the importers."""

from enum import StrEnum


class Kind(StrEnum):
    contacts = "contacts"
    orders = "orders"
    gift_cards = "gift-cards"
    events = "events"


class ExportKind(StrEnum):
    """What ``tidings export`` writes: every importable kind, and the issued coupon codes (for the shop)."""

    contacts = "contacts"
    orders = "orders"
    gift_cards = "gift-cards"
    events = "events"
    coupons = "coupons"
