"""Is the one-click unsubscribe endpoint reachable at the public URL, as a mailbox provider POSTs it?

RFC 8058: the provider POSTs ``List-Unsubscribe=One-Click`` to the URL in the header and
follows no redirect. The probe sends the same request for a token Tidings never signed
(``/u/tidings-doctor-probe``): the public app answers such a token with 400 and changes
nothing, so a 400 proves that the name resolves, TLS is valid, the proxy forwards ``/u/``
and Tidings answers there, without unsubscribing anyone. Anything else is named: a
redirect (providers do not follow it), 404/405 (the path does not reach the public app),
5xx, a TLS or connection error, a timeout.
"""

from __future__ import annotations

import httpx

from engine.doctor.records import Finding

PROBE_TOKEN = "tidings-doctor-probe"


def one_click(public_url: str, *, timeout: float) -> Finding:
    url = f"{public_url.rstrip('/')}/u/{PROBE_TOKEN}"
    try:
        response = httpx.post(
            url,
            content=b"List-Unsubscribe=One-Click",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
            timeout=timeout,
            follow_redirects=False,
        )
    except httpx.TimeoutException:
        return Finding(False, f"POST {url} timed out after {timeout:g} s", _REACH)
    except httpx.HTTPError as exc:
        reason = " ".join(str(exc).split())[:200] or type(exc).__name__
        return Finding(False, f"POST {url} failed: {reason}", _REACH)
    status = response.status_code
    if status == 400:
        return Finding(True, f"POST {url} answered as Tidings does for a foreign token (400)")
    if 300 <= status < 400:
        where = response.headers.get("location", "?")
        return Finding(
            False,
            f"POST {url} redirects ({status}) to {where}",
            "mail providers do not follow redirects: set TIDINGS_PUBLIC_URL to the final address",
        )
    if status in (404, 405):
        return Finding(False, f"POST {url} answered {status}: /u/ does not reach Tidings' public app", _REACH)
    return Finding(False, f"POST {url} answered {status}, not Tidings' 400 for a foreign token", _REACH)


_REACH = "make the public app (tidings run / tidings serve) reachable there, /u/ included"
