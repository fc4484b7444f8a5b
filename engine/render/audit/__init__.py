"""Checks of a rendered message beyond "does it render": links, spam heuristics, accessibility.

``audit_message`` runs them all on the message exactly as it is sent (absolute image URLs,
tracking parameters, the footer) and returns :class:`Finding` s, each naming its check,
rule, severity, the element it concerns and the rule it mirrors. The preview lists them;
the image-loading check needs the network or the workspace and lives with the preview.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from engine.message import EmailMessage
from engine.render.audit.accessibility import accessibility_findings
from engine.render.audit.document import Document, describe
from engine.render.audit.findings import Check, Finding
from engine.render.audit.links import link_findings
from engine.render.audit.spam import spam_findings


@dataclass(frozen=True, slots=True)
class Audit:
    findings: list[Finding]
    checked: dict[Check, int] = field(default_factory=dict)  # what each check looked at, for its summary
    #: Every ``<img>``: its ``src`` and the element as a finding names it (for the image-loading check).
    images: list[tuple[str, str]] = field(default_factory=list)


def audit_message(message: EmailMessage, *, locale: str | None) -> Audit:
    document = Document(message.html)
    unsubscribe = message.headers.get("List-Unsubscribe", "").split(",", 1)[0].strip().strip("<>")
    # A marketing message carries List-Unsubscribe; its own unsubscribe link follows the public URL.
    links, link_count = link_findings(document, marketing=bool(unsubscribe), own=(unsubscribe,))
    findings = [*links, *spam_findings(document, message), *accessibility_findings(document, locale=locale)]
    checked = {
        Check.links: link_count,
        Check.spam: 1,
        Check.accessibility: len(document.runs()),
    }
    images = [(img.get("src") or "", describe(img)) for img in document.elements("img")]
    return Audit(findings, checked, images)


__all__ = ["Audit", "Check", "Document", "Finding", "audit_message"]
