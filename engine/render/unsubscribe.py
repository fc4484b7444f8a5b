"""Signing unsubscribe links fast enough to do it for every message.

``engine.tokens.UnsubscribeTokens`` is the definition of the token; signing through
itsdangerous derives the key and sets up HMAC on every call. Here the key is derived once
(by itsdangerous's own signer) and an HMAC prototype is copied per token over the same
payload (``UnsubscribeTokens.payload``), producing byte-identical tokens at a fraction of
the cost.
To stay a cache and never a second definition, the constructor compares its output with
``UnsubscribeTokens.sign`` and uses the library path whenever they differ.
"""

from __future__ import annotations

import hmac

from itsdangerous.encoding import base64_encode

from engine.tokens import UnsubscribeTokens

_PROBES = ((1, None), (1042, "holiday-greetings"), (2**40, "x" * 90))


class UnsubscribeLinks:
    """``url(contact_id, campaign_id)`` → ``PUBLIC_URL/u/TOKEN``; ``UnsubscribeTokens.verify`` accepts it."""

    def __init__(self, secret_key: str, public_url: str) -> None:
        self.reference = UnsubscribeTokens(secret_key)
        self.base = public_url.rstrip("/") + "/u/"
        signer = self.reference.signer
        self._sep = signer.sep.encode("ascii") if isinstance(signer.sep, str) else signer.sep
        self._mac = hmac.new(signer.derive_key(), digestmod=signer.digest_method)
        self.fast = all(self._fast_sign(c, k) == self.reference.sign(c, "email", k) for c, k in _PROBES)

    def _fast_sign(self, contact_id: int, campaign_id: str | None) -> str:
        value = UnsubscribeTokens.payload(contact_id, "email", campaign_id)
        mac = self._mac.copy()
        mac.update(value)
        return (value + self._sep + base64_encode(mac.digest())).decode("ascii")

    def token(self, contact_id: int, campaign_id: str | None = None) -> str:
        if self.fast:
            return self._fast_sign(contact_id, campaign_id)
        return self.reference.sign(contact_id, "email", campaign_id)

    def url(self, contact_id: int, campaign_id: str | None = None) -> str:
        return self.base + self.token(contact_id, campaign_id)
