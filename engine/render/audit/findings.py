"""One finding of a message check: which check, which rule, how bad, what it concerns."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any


class Check(StrEnum):
    links = "links"
    images = "images"
    spam = "spam"
    accessibility = "accessibility"


@dataclass(frozen=True, slots=True)
class Finding:
    """``element`` is a short rendering of the element concerned (``<a href="…">Read more</a>``);
    ``reference`` the rule's source (``WCAG 2.1 1.4.3``, ``SpamAssassin HTML_IMAGE_RATIO_02``)."""

    check: Check
    rule: str
    severity: str  # error | warning | info
    message: str
    element: str = ""
    reference: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "check": self.check.value,
            "rule": self.rule,
            "severity": self.severity,
            "message": self.message,
            "element": self.element,
            "reference": self.reference,
        }
