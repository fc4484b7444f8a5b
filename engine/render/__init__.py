"""Templates and rendering: MJML + Jinja2, compiled once, localised, compliant.

The runtime and the preview call :class:`Renderer` (``render_email``, ``render_post``,
``invalidate``) with a context from :func:`build_context` (store rows) or
:func:`sample_context` (a template's ``sample.yaml``); ``validate`` calls
:func:`engine.render.checks.check_workspace`.
"""

from engine.render.context import (
    CONTEXT_NAMES,
    Record,
    build_context,
    contact_record,
    coupon_record,
    cutoff_record,
    event_record,
    gift_card_record,
    load_sample,
    order_record,
    sample_context,
)
from engine.render.environment import expression_environment, make_environment
from engine.render.errors import RenderError
from engine.render.renderer import Renderer, UnknownTemplate

__all__ = [
    "CONTEXT_NAMES",
    "Record",
    "RenderError",
    "Renderer",
    "UnknownTemplate",
    "build_context",
    "contact_record",
    "coupon_record",
    "cutoff_record",
    "event_record",
    "expression_environment",
    "gift_card_record",
    "load_sample",
    "make_environment",
    "order_record",
    "sample_context",
]
