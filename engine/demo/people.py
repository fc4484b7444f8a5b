"""Names, email addresses and X handles for demo contacts.

Faker is slow per call (tens of microseconds, more for locale-aware providers), so each
locale's names are drawn once into small pools and contacts sample from the pools with the
generator's own seeded draws: 50,000 contacts cost a few hundred Faker calls.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

from faker import Faker

from engine.demo.catalog import EMAIL_DOMAINS, MARKETS
from engine.demo.draw import Draw

POOL_SIZE = 160

_NOT_HANDLE = re.compile(r"[^a-z0-9]+")


def ascii_fold(text: str) -> str:
    """``Ștefan Nemeș`` → ``stefan nemes``: addresses and handles stay ASCII."""
    decomposed = unicodedata.normalize("NFKD", text)
    return decomposed.encode("ascii", "ignore").decode("ascii").lower()


@dataclass(frozen=True, slots=True)
class NamePool:
    first_names: tuple[str, ...]
    last_names: tuple[str, ...]


def build_name_pools(seed: int) -> dict[str, NamePool]:
    """One pool per market locale; Faker is seeded once per locale from ``seed``."""
    pools: dict[str, NamePool] = {}
    for offset, market in enumerate(MARKETS):
        fake = Faker(market.faker_locale)
        fake.seed_instance(seed * 31 + offset)
        first = sorted({fake.first_name() for _ in range(POOL_SIZE)})
        last = sorted({fake.last_name() for _ in range(POOL_SIZE)})
        pools[market.country] = NamePool(tuple(first), tuple(last))
    return pools


class AddressBook:
    """Hands out unique email addresses (and X handles) that look like people's own."""

    def __init__(self, rng: Draw, taken: set[str] | None = None) -> None:
        self._rng = rng
        self._taken: set[str] = set(taken or ())
        self._handles: set[str] = set()

    def email(self, first: str, last: str) -> str:
        rng = self._rng
        f, l_ = _NOT_HANDLE.sub("", ascii_fold(first)), _NOT_HANDLE.sub("", ascii_fold(last))
        style = rng.random()
        if style < 0.45:
            local = f"{f}.{l_}"
        elif style < 0.65:
            local = f"{f}{l_}"
        elif style < 0.8:
            local = f"{f[:1]}.{l_}"
        else:
            local = f"{f}{rng.between(1, 99)}"
        domain = EMAIL_DOMAINS[rng.below(len(EMAIL_DOMAINS))]
        address = f"{local}@{domain}"
        while address in self._taken:
            address = f"{local}{rng.between(2, 9999)}@{domain}"
        self._taken.add(address)
        return address

    def x_handle(self, first: str, last: str) -> str:
        rng = self._rng
        base = (_NOT_HANDLE.sub("", ascii_fold(first)) + "_" + _NOT_HANDLE.sub("", ascii_fold(last)))[:11]
        handle = base
        while handle in self._handles:
            handle = f"{base}{rng.between(1, 999)}"
        self._handles.add(handle)
        return handle
