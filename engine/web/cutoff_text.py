# ruff: noqa: E501 — translations read better unbroken
"""The order-by banner's words in English, Romanian and Estonian.

The dates are formatted with the same Babel patterns as the shipped order-by reminder
(``templates/shipping-reminder``) and the shipping methods come from the workspace's
``labels: method`` (as in the emails), so the website and the inbox say the same thing in the
same words. Phrases are built around the formatted values so that each stays grammatical
with Babel's nominative dates (Estonian "enne kuupäeva 24. detsember", the date standing
in apposition, never "hiljemalt <date>", which would need the adessive).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class BannerWords:
    title: str  # "{deliver_before}" is the formatted date
    order_by: str  # the row's date-time pattern (Babel)
    deliver_before: str  # the title's date pattern (Babel)
    passed: str
    zone: str  # "{zone}": the generic zone name (Babel)


WORDS: dict[str, BannerWords] = {
    "en": BannerWords(
        title="Order by these times for delivery before {deliver_before}",
        order_by="EEEE, MMMM d, h:mm a",
        deliver_before="MMMM d",
        passed="closed",
        zone="Times in {zone}",
    ),
    "ro": BannerWords(
        title="Comandă până la aceste termene, ca să primești coletul înainte de {deliver_before}",
        order_by="EEEE, d MMMM, HH:mm",
        deliver_before="d MMMM",
        passed="termen depășit",
        zone="Fus orar: {zone}",
    ),
    "et": BannerWords(
        title="Viimased tellimisajad, et pakk jõuaks kohale enne kuupäeva {deliver_before}",
        order_by="EEEE, d. MMMM, HH:mm",
        deliver_before="d. MMMM",
        passed="tähtaeg on möödas",
        zone="Ajavöönd: {zone}",
    ),
}
