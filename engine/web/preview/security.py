"""What the preview refuses, and the headers that keep a rendered email from doing harm.

The preview is a local tool, but a browser that has it open also visits other sites:

* **Host check** (DNS rebinding): a page on ``evil.example`` that resolves its name to
  127.0.0.1 could read the preview. Only the bound host and the loopback names are served,
  unless the preview is deliberately bound to all interfaces.
* **Origin check** on POST (cross-site form posts): "send test" must not be triggerable by
  another site's form. A POST whose ``Origin`` (or, without one, ``Referer``) is not this
  server is refused with 403.
* **Referrer policy** ``same-origin`` on the preview's pages (a browser then sends the
  ``Origin`` the check above needs) and ``no-referrer`` on rendered emails, whose images
  come from other hosts that have no business knowing the preview's URLs.
* **Content Security Policy**: the preview's own pages load only their own script and CSS;
  rendered emails and outbox messages are served with ``sandbox`` (no script, an opaque
  origin), so a template that contains a script cannot act on the preview even when its
  HTML is opened alone, outside the sandboxed iframe.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from starlette.requests import Request

LOOPBACK_NAMES = ("127.0.0.1", "localhost", "::1", "[::1]")
ANY_INTERFACE = {"0.0.0.0", "::", ""}

PAGE_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "frame-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'self'; base-uri 'none'"
)
EMAIL_HEADERS_EXTRA = {"Referrer-Policy": "no-referrer"}
EMAIL_CSP = (
    "sandbox allow-popups allow-popups-to-escape-sandbox; default-src 'none'; img-src * data: cid:; "
    "style-src * 'unsafe-inline'; font-src * data:; frame-ancestors 'self'; base-uri 'none'"
)
COMMON_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


def allowed_hosts(bind_host: str) -> list[str]:
    """Host names the preview answers to; ``["*"]`` when bound to every interface."""
    if bind_host in ANY_INTERFACE:
        return ["*"]
    return sorted({*LOOPBACK_NAMES, bind_host})


def same_origin(request: Request) -> bool:
    """True when a state-changing request comes from this server's own pages (or from no page at all)."""
    origin = request.headers.get("origin")
    if origin is None:
        referer = request.headers.get("referer")
        if referer is None:
            return True  # a script or curl: no browser, no ambient credentials to abuse
        origin = referer
    if origin == "null":
        return False
    parts = urlsplit(origin)
    return parts.netloc.lower() == request.headers.get("host", "").lower()
