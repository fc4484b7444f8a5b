"""The image check: does every picture of the message load? A broken image is what the recipient sees.

An image under the public app's ``/images`` (``TIDINGS_SHOP__IMAGES_URL`` unset) is looked up
in the workspace's ``images/`` folder, as that is what the public app will serve; any other
http(s) image is fetched (GET, redirects followed, 3 s timeout, the body not read past its
headers) and must answer 200 with an ``image/*`` type. Answers are kept for five minutes
on the injected clock, so a page that reloads on every save does not fetch again; a CDN that
is down shows as the check's finding, never as a slow or failed page.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import unquote, urlsplit

import httpx

from engine.clock import Clock
from engine.render.audit import Finding
from engine.render.audit.findings import Check
from engine.settings import Settings
from engine.web.images import image_file

TIMEOUT_SECONDS = 3.0
KEEP = timedelta(minutes=5)
REFERENCE = "what the recipient's mail client loads"


@dataclass(frozen=True, slots=True)
class _Answer:
    problem: str | None
    at: datetime


class ImageProbe:
    """Checks image sources; thread-safe, with a small cache of remote answers."""

    def __init__(self, settings: Settings, clock: Clock, *, timeout: float = TIMEOUT_SECONDS) -> None:
        self.settings = settings
        self.clock = clock
        self.timeout = timeout
        self._answers: dict[str, _Answer] = {}
        self._lock = threading.Lock()

    def findings(self, images: list[tuple[str, str]]) -> list[Finding]:
        """``images``: (src, element as a finding shows it), in document order; one finding per broken src."""
        found: list[Finding] = []
        seen: set[str] = set()
        for src, element in images:
            if src in seen:
                continue
            seen.add(src)
            problem = self.problem(src)
            if problem is not None:
                found.append(Finding(Check.images, "image-loads", "error", problem, element, REFERENCE))
        return found

    def problem(self, src: str) -> str | None:
        """Why ``src`` does not load, or None when it does (or is not a web address: cid:, data:)."""
        parts = urlsplit(src)
        if parts.scheme not in {"http", "https"} or not parts.hostname:
            return None  # the link check reports malformed and relative sources
        local = self._local_name(src)
        if local is not None:
            if image_file(self.settings.images_dir, local) is None:
                return f"does not load: {src} — there is no image {local!r} in the workspace's images/ folder"
            return None
        now = self.clock.now()
        with self._lock:
            known = self._answers.get(src)
            if known is not None and now - known.at < KEEP:
                return known.problem
        problem = self._fetch(src)
        with self._lock:
            self._answers[src] = _Answer(problem, now)
        return problem

    def _local_name(self, src: str) -> str | None:
        if not self.settings.images_served_by_public_app:
            return None
        base = self.settings.public_images_url + "/"
        if not src.startswith(base):
            return None
        return unquote(urlsplit(src).path.removeprefix(urlsplit(base).path))

    def _fetch(self, src: str) -> str | None:
        try:
            with httpx.stream("GET", src, timeout=self.timeout, follow_redirects=True) as response:
                kind = response.headers.get("content-type", "").split(";")[0].strip().lower()
                if response.status_code != 200:
                    return f"does not load: {src} answers {response.status_code}"
                if not kind.startswith("image/"):
                    return f"does not load as an image: {src} is {kind or 'of no stated type'}"
        except httpx.TimeoutException:
            return f"does not load: {src} did not answer within {self.timeout:g} s"
        except httpx.HTTPError as exc:
            reason = str(exc) or type(exc).__name__
            return f"does not load: {src} — {reason}"
        return None
