"""What can be imported and exported: kept apart, so the CLI names the kinds without loading the importers."""

from enum import StrEnum


class Kind(StrEnum):
    contacts = "contacts"
    orders = "orders"
    gift_cards = "gift-cards"
    events = "events"
