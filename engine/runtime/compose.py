"""A planned message, rendered: the one path from (campaign, step, contact, facts) to what is sent.

The dispatcher renders every outbox row through :func:`compose_email` / :func:`compose_post`;
``tidings plan`` renders its first rows, ``tidings render --contact --campaign`` and the preview's
contact picker render the contact's planned message through the very same functions, with the
facts :func:`engine.runtime.planner.plan_contact` decides. So the subject, text and HTML they
show are those of the send (but for the Date, the Message-ID and the per-message unsubscribe
token).

One thing can only be shown, not decided, before a flow runs: the code of a ``coupon`` step. Where
a send follows a coupon step and no code was issued yet, :func:`placeholder_coupon` stands in
(code ``PREVIEW-CODE``, the step's percent and expiry, ``coupon.placeholder`` true).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime
from typing import Any, Protocol

from engine.channels.base import CAMPAIGN_HEADER, DELIVERY_HEADER
from engine.message import EmailMessage, SocialPost
from engine.runtime.facts import PLACEHOLDER_CODE, CouponFact, MessageFacts
from engine.runtime.message_context import StoredData, message_context
from engine.settings import Settings
from engine.workspace.models import Campaign, CouponStep, SendStep


class Renderer(Protocol):
    """What composing needs from ``engine.render.Renderer``."""

    def render_email(
        self,
        template: str,
        context: Mapping[str, Any],
        *,
        locale: str | None = ...,
        campaign_id: str | None = ...,
        step_id: str | None = ...,
        delivery_id: int | str | None = ...,
        marketing: bool = ...,
        to_email: str | None = ...,
        to_name: str | None = ...,
    ) -> EmailMessage: ...

    def render_post(
        self,
        template: str,
        context: Mapping[str, Any],
        *,
        locale: str | None = None,
        campaign_id: str | None = None,
    ) -> SocialPost: ...


def compose_email(
    renderer: Renderer,
    settings: Settings,
    campaign: Campaign,
    *,
    template: str,
    step_id: str,
    contact_id: int,
    locale: str | None,
    marketing: bool,
    facts: MessageFacts,
    data: StoredData,
    now: datetime,
    delivery_id: int | None = None,
    token: str | None = None,
) -> EmailMessage:
    """One contact's email from one step, rendered from its facts and the contact's stored data."""
    contact = data.contacts[contact_id]
    context = message_context(settings, campaign, facts, data, contact_id=contact_id, now=now)
    message = renderer.render_email(
        template,
        context,
        locale=locale or contact.locale,
        campaign_id=campaign.key,
        step_id=step_id,
        delivery_id=delivery_id,
        marketing=marketing,
        to_email=contact.email,
        to_name=" ".join(p for p in (contact.first_name, contact.last_name) if p) or None,
    )
    if delivery_id is None:
        return message
    return stamped(message, campaign.key, delivery_id, token)


def compose_post(
    renderer: Renderer,
    settings: Settings,
    campaign: Campaign,
    *,
    template: str,
    facts: MessageFacts,
    now: datetime,
) -> SocialPost:
    """A broadcast post, rendered from its facts (no recipient)."""
    context = message_context(settings, campaign, facts, StoredData(), contact_id=None, now=now)
    post = renderer.render_post(template, context, campaign_id=campaign.key)
    return replace(post, campaign=post.campaign or campaign.key)


def stamped(message: EmailMessage, campaign_id: str, delivery_id: int, token: str | None) -> EmailMessage:
    """Every sent message carries its campaign and delivery, as headers and custom args, and a
    Message-ID built from its row's random token (stable across retries of the row, so a resend is
    recognisable; never reused by another database). A row planned before tokens existed gets a
    fresh random one from the channel (:func:`engine.message.new_message_id`)."""
    headers = dict(message.headers)
    headers.setdefault(CAMPAIGN_HEADER, campaign_id)
    headers.setdefault(DELIVERY_HEADER, str(delivery_id))
    custom_args = dict(message.custom_args)
    custom_args.setdefault("delivery_id", str(delivery_id))
    custom_args.setdefault("campaign_id", campaign_id)
    message_id = message.message_id
    if token and message_id is None:
        domain = message.from_email.rpartition("@")[2].strip() or "localhost"
        message_id = f"<tidings.{token}.{delivery_id}@{domain}>"
    return replace(message, headers=headers, custom_args=custom_args, message_id=message_id)


def placeholder_coupon(campaign: Campaign, step: SendStep, now: datetime) -> CouponFact | None:
    """The coupon a send after a ``coupon`` step will show, where none was issued yet: the step's
    percent and expiry with the code ``PREVIEW-CODE`` (marked ``placeholder``)."""
    found: CouponStep | None = None
    for candidate in campaign.iter_steps():
        if candidate is step:
            break
        if isinstance(candidate, CouponStep):
            found = candidate
    if found is None:
        return None
    spec = found.coupon
    prefix = f"{spec.prefix}-" if spec.prefix else ""
    return CouponFact(
        f"{prefix}{PLACEHOLDER_CODE}", spec.percent, now + spec.expires_in.delta, placeholder=True
    )


__all__ = ["compose_email", "compose_post", "placeholder_coupon", "stamped"]
