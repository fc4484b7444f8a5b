"""The public app: what recipients, SendGrid and the shop reach over the internet.

Paths and answers (DESIGN.md "Interfaces"):

* ``POST /u/{token}`` — RFC 8058 one-click unsubscribe (body ``List-Unsubscribe=One-Click``,
  form-encoded or multipart; an empty body from the page's button works too): 200, no
  cookies, no confirmation step. The preferences form (``form=preferences``) leaves the
  ``topic`` fields it ticks among the ``topic_shown`` ones (and rejoins the others), pauses
  marketing through the ``pause`` day (empty: no pause; :mod:`engine.feedback.preferences`)
  and unsubscribes from the ``channel`` fields it ticks. ``GET /u/{token}`` — the localised
  preferences page. A malformed, tampered or foreign token gets 400 and changes nothing.
* ``POST /webhooks/sendgrid`` — signed event webhook: 403 for a missing, invalid or stale
  signature (see :mod:`engine.feedback.sendgrid_events`), 400 for a body that is not an
  array of events, 200 once stored.
* ``POST /events`` — shop events: 503 without ``TIDINGS_EVENTS_TOKEN``, 401 for a missing or
  wrong bearer token (constant-time comparison), 400 for a body that is not JSON (or nests
  deeper than a parser can read), 413 when too large, 200 when every event is stored (repeats
  included: they are counted as ``duplicate``), 422 with ``errors: [{index, field, message}]``
  when none is valid (or the body is not an event or a list of them). A batch with valid and
  invalid events stores the valid ones and answers **207 Multi-Status** with
  ``{received, stored, duplicate, rejected: [indexes], errors: [{index, field, message}]}``:
  a 2xx, because what was valid is stored and sending it again changes nothing (the shop's
  retry-on-5xx never loops on it), and a distinct one, because the rejected events need
  fixing. Every answer is 4xx or 2xx for anything a shop can send: nothing it posts is a 500.
* ``POST /care/goodwill`` — customer care gives a coupon and the apology is sent
  (:mod:`engine.web.care`: 503 without ``TIDINGS_CARE_TOKEN``, 401, 422, ``Idempotency-Key``).
* ``GET /cutoffs`` and ``GET /cutoffs/banner?country=EE&locale=et`` — order-by dates from the
  workspace's schedules, as JSON and as an embeddable HTML fragment (:mod:`engine.web.cutoffs`).
* ``GET /`` — the status page (what runs, what is next, links); ``GET /api/status`` its JSON
  (see :mod:`engine.web.status`).
* ``GET /healthz`` — 200 when the database answers and the probe says alive, else 503.
* ``GET /metrics`` — Prometheus text.
* ``GET /images/{name}`` — the workspace's ``images/`` folder (see :mod:`engine.web.images`).

Every database call runs in Starlette's thread pool: the store is synchronous SQLAlchemy.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any, Literal

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape
from prometheus_client import CONTENT_TYPE_LATEST
from sqlalchemy import func, select, text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError
from starlette.concurrency import run_in_threadpool

from engine import metrics
from engine.clock import Clock
from engine.feedback import jsonsafe
from engine.feedback.preferences import (
    InvalidPreference,
    PreferenceChange,
    apply_preferences,
    pause_options,
    read_preferences,
    workspace_topics,
)
from engine.feedback.sendgrid_events import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    InvalidPayload,
    WebhookRejected,
    WebhookVerifier,
    parse_events,
    store_events,
)
from engine.feedback.shop_events import MAX_BATCH, InvalidEvents, check_events, ingest_events
from engine.feedback.unsubscribe import UnknownChannel, apply_unsubscribe, preferences
from engine.runtime.attention import attention
from engine.runtime.breaker import BreakerLimits
from engine.settings import Settings
from engine.store import read_only
from engine.store.models import Delivery, DeliveryState
from engine.tokens import InvalidToken, UnsubscribeClaim, UnsubscribeTokens
from engine.web.api_guard import guarded_json, read_body
from engine.web.care import add_care_routes
from engine.web.cutoffs import (
    Answer,
    BadRequest,
    NotFound,
    SchedulesFiles,
    SchedulesSource,
    banner_html,
    cutoffs_json,
)
from engine.web.images import image_response
from engine.web.status import CachedWorkspace, NextUpProvider, WorkspaceSource, status_view
from engine.web.unsubscribe_text import long_date, pick_language, strings

log = logging.getLogger(__name__)

MAX_EVENTS_BODY = 20 * 1024 * 1024
MAX_WEBHOOK_BODY = 20 * 1024 * 1024
MAX_FORM_BODY = 64 * 1024
HealthProbe = Callable[[], dict[str, Any]]
EventsHook = Callable[[list[int]], None]

_JSON_BODY = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": {"oneOf": [{"type": "object"}, {"type": "array"}]}}},
    }
}
_FORM_BODY = {
    "requestBody": {
        "required": False,
        "content": {
            "application/x-www-form-urlencoded": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "List-Unsubscribe": {"type": "string", "enum": ["One-Click"]},
                        "channel": {"type": "array", "items": {"type": "string"}},
                    },
                }
            }
        },
    }
}


def _pages() -> Environment:
    return Environment(
        loader=FileSystemLoader(str(Path(__file__).with_name("templates"))),
        autoescape=select_autoescape(["html"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )


def _error(status: int, message: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"error": message, **extra}, status_code=status)


def create_public_app(
    settings: Settings,
    engine: Engine,
    clock: Clock,
    *,
    health_probe: HealthProbe | None = None,
    on_events_stored: EventsHook | None = None,
    schedules: SchedulesSource | None = None,
    next_up: NextUpProvider | None = None,
    workspace: WorkspaceSource | None = None,
) -> FastAPI:
    """The public app over ``engine``; see the module docstring for its paths and answers.

    ``schedules`` gives the workspace's current schedules (the daemon passes its last good
    workspace's); by default they are read from ``TIDINGS_WORKSPACE`` and re-read on change.
    ``next_up`` and ``workspace`` feed the status page: the daemon passes its planner's next
    moments and its live workspace; without them the page reads the workspace from disk and
    says that "next up" comes from the daemon.
    """
    tokens = UnsubscribeTokens(settings.secret_key_value())
    verifier = WebhookVerifier(settings)
    pages = _pages()
    shop = settings.shop.as_context()
    events_token = settings.events_token.get_secret_value().encode() if settings.events_token else None
    current_schedules = schedules or SchedulesFiles(settings.workspace_dir, settings.default_locale)
    app = FastAPI(
        title="Tidings public API",
        version="1",
        description="Unsubscribe, SendGrid event webhook, shop events, order-by dates, health and metrics.",
        docs_url=None,
        redoc_url=None,
    )

    def page(name: str, language: str, status: int = 200, **context: Any) -> HTMLResponse:
        html = pages.get_template(f"public/{name}.html").render(
            lang=language, t=strings(language), shop=shop, **context
        )
        return HTMLResponse(html, status_code=status, headers={"Cache-Control": "no-store"})

    def claim_or_none(token: str) -> UnsubscribeClaim | None:
        try:
            return tokens.verify(token)
        except InvalidToken:
            return None

    def invalid_link() -> HTMLResponse:
        return page("invalid_link", pick_language(None, settings.default_locale), status=400)

    # --- unsubscribe and preferences ------------------------------------------------------

    workspace_source: WorkspaceSource = workspace or CachedWorkspace(settings)

    def topic_labels(language: str) -> dict[str, str]:
        """The workspace's topics in the reader's language (``labels: topic:``; else the topic's name)."""
        current = workspace_source()
        labels = current.schedules.labels
        return {
            topic: labels.text("topic", topic, language, settings.default_locale)
            if labels.has_kind("topic")
            else topic
            for topic in workspace_topics(current)
        }

    def preferences_page(claim: UnsubscribeClaim, token: str) -> HTMLResponse:
        view = preferences(engine, claim)
        language = pick_language(view.locale, settings.default_locale)
        with engine.connect() as conn:
            chosen = read_preferences(conn, claim.contact_id, settings.zone)
        now = clock.now()
        current = chosen.through if chosen.paused_at(now) else None
        options = pause_options(now.astimezone(chosen.zone).date())
        if current is not None and current not in options:
            options = sorted([*options, current])
        return page(
            "unsubscribe",
            language,
            action=f"/u/{token}",
            masked_email=view.masked_email or "",
            channels=[status for status in view.channels if status.subscribed],
            token_channel=claim.channel,
            topics=[
                {"topic": topic, "label": label, "left": topic in chosen.left_topics}
                for topic, label in topic_labels(language).items()
            ],
            pause_options=[{"value": day.isoformat(), "label": long_date(day, language)} for day in options],
            pause_current=current.isoformat() if current else "",
            paused_through=long_date(current, language) if current else None,
        )

    @app.get("/u/{token}", response_class=HTMLResponse, summary="Unsubscribe and preferences page")
    def unsubscribe_page(token: str) -> HTMLResponse:
        claim = claim_or_none(token)
        if claim is None:
            return invalid_link()
        return preferences_page(claim, token)

    def save_preferences(claim: UnsubscribeClaim, fields: dict[str, list[str]]) -> PreferenceChange | None:
        """Apply the form's topics and pause; None when the form has neither."""
        if "topic_shown" not in fields and "pause" not in fields:
            return None
        pause: date | None | Literal["keep"] = "keep"
        if "pause" in fields:
            text = (fields["pause"] or [""])[-1].strip()
            try:
                pause = date.fromisoformat(text) if text else None
            except ValueError:
                raise InvalidPreference(f"not a day: {text!r}") from None
        return apply_preferences(
            engine,
            claim,
            now=clock.now(),
            default_zone=settings.zone,
            known_topics=workspace_topics(workspace_source()),
            shown_topics=fields.get("topic_shown", []),
            leave=[value for value in fields.get("topic", []) if value],
            pause=pause,
        )

    @app.post("/u/{token}", summary="One-click unsubscribe (RFC 8058)", openapi_extra=_FORM_BODY)
    async def unsubscribe(token: str, request: Request) -> Response:
        claim = claim_or_none(token)
        if claim is None:
            return invalid_link()
        fields = await _form_fields(request)
        one_click = "One-Click" in fields.get("List-Unsubscribe", [])
        chosen = [value for value in fields.get("channel", []) if value]
        from_form = fields.get("form") == ["preferences"] and not one_click
        change: PreferenceChange | None = None
        try:
            if from_form:
                change = await run_in_threadpool(save_preferences, claim, fields)
            if from_form and not chosen:
                result = None
            else:
                result = await run_in_threadpool(
                    apply_unsubscribe,
                    engine,
                    claim,
                    now=clock.now(),
                    source="one-click" if one_click or not fields else "preferences page",
                    channels=chosen or None,
                )
        except (UnknownChannel, InvalidPreference) as exc:
            if "text/html" in request.headers.get("accept", ""):
                language = pick_language(None, settings.default_locale)
                return page("invalid_link", language, status=400, message=strings(language)["invalid_choice"])
            return PlainTextResponse(str(exc), status_code=400)
        if one_click or "text/html" not in request.headers.get("accept", ""):
            answer = "unsubscribed\n" if result is not None else "saved\n"
            return PlainTextResponse(answer, headers={"Cache-Control": "no-store"})
        view = await run_in_threadpool(preferences, engine, claim)
        language = pick_language(view.locale, settings.default_locale)
        t = strings(language)
        labels = [t[f"channel.{channel}"] for channel in (result.channels if result else ())]
        return page("unsubscribe_done", language, labels=labels, changes=_change_lines(change, t, language))

    def _change_lines(change: PreferenceChange | None, t: dict[str, str], language: str) -> list[str]:
        if change is None:
            return []
        names = topic_labels(language)
        lines = [t["left_topic"].format(label=names.get(topic, topic)) for topic in change.left]
        lines += [t["rejoined_topic"].format(label=names.get(topic, topic)) for topic in change.rejoined]
        if change.paused_through is not None:
            lines.append(t["paused_now"].format(date=long_date(change.paused_through, language)))
        if change.pause_ended:
            lines.append(t["pause_ended"])
        return lines

    # --- SendGrid ------------------------------------------------------------------------

    @app.post("/webhooks/sendgrid", summary="SendGrid signed event webhook", openapi_extra=_JSON_BODY)
    async def sendgrid_webhook(request: Request) -> Response:
        body = await read_body(request, MAX_WEBHOOK_BODY)
        if body is None:
            return _error(413, "request body too large")
        try:
            verifier.verify(
                body,
                request.headers.get(SIGNATURE_HEADER),
                request.headers.get(TIMESTAMP_HEADER),
                clock.now(),
            )
        except WebhookRejected as exc:
            log.warning("rejected a SendGrid webhook post: %s", exc.reason)
            return _error(403, "signature rejected", reason=exc.reason)
        try:
            events = parse_events(body)
        except InvalidPayload as exc:
            return _error(400, str(exc))
        result = await run_in_threadpool(
            store_events, engine, events, clock=clock, breaker=BreakerLimits.from_settings(settings)
        )
        return JSONResponse(
            {
                "received": result.received,
                "stored": result.stored,
                "duplicate": result.duplicates,
                "paused": result.paused,
            }
        )

    # --- shop events ---------------------------------------------------------------------

    @app.post("/events", summary="Shop events (one or a batch)", openapi_extra=_JSON_BODY)
    async def shop_events(request: Request) -> Response:
        guarded = await guarded_json(
            request,
            events_token,
            setting="TIDINGS_EVENTS_TOKEN",
            what="events API",
            limit=MAX_EVENTS_BODY,
            parse=jsonsafe.parse,
        )
        if guarded.refusal is not None:
            return guarded.refusal
        try:
            batch = check_events(guarded.payload, max_batch=MAX_BATCH)
        except InvalidEvents as exc:
            return _error(422, "invalid events", errors=[error.as_dict() for error in exc.errors])
        errors = [error.as_dict() for error in batch.errors]
        if not batch.valid:
            return _error(422, "invalid events", errors=errors, rejected=batch.rejected)
        result = await run_in_threadpool(ingest_events, engine, batch.valid, now=clock.now())
        if result.stored_ids and on_events_stored is not None:
            try:
                await run_in_threadpool(on_events_stored, result.stored_ids)
            except Exception:  # noqa: BLE001 — stored is stored; enrolment catches up from shop_event
                log.exception("on_events_stored failed for %d new events", len(result.stored_ids))
        answer = result.as_dict() | {"received": batch.received}
        if not batch.rejected:
            return JSONResponse(answer)
        return JSONResponse(answer | {"rejected": batch.rejected, "errors": errors}, status_code=207)

    # --- order-by dates ----------------------------------------------------------------

    def cutoff_response(answer: Answer, response: Response) -> Response:
        response.headers["Cache-Control"] = f"public, max-age={answer.max_age}"
        response.headers["Access-Control-Allow-Origin"] = "*"
        response.headers["X-Content-Type-Options"] = "nosniff"
        if answer.language:
            response.headers["Content-Language"] = answer.language
        return response

    def cutoff_error(status: int, message: str) -> Response:
        return cutoff_response(Answer(None, 60), _error(status, message))

    @app.get("/cutoffs", summary="Order-by dates per country and shipping method (JSON)")
    async def cutoffs(country: str | None = None) -> Response:
        try:
            answer = cutoffs_json(await run_in_threadpool(current_schedules), clock.now(), country)
        except BadRequest as exc:
            return cutoff_error(400, str(exc))
        except NotFound as exc:
            return cutoff_error(404, str(exc))
        return cutoff_response(answer, JSONResponse(answer.body))

    @app.get(
        "/cutoffs/banner",
        response_class=HTMLResponse,
        summary="One country's order-by dates as an HTML fragment to embed in the shop's pages",
    )
    async def cutoff_banner(country: str | None = None, locale: str | None = None) -> Response:
        try:
            answer = banner_html(
                pages,
                await run_in_threadpool(current_schedules),
                clock.now(),
                country=country,
                locale=locale,
                default_locale=settings.default_locale,
            )
        except BadRequest as exc:
            return cutoff_error(400, str(exc))
        except NotFound as exc:
            return cutoff_error(404, str(exc))
        response = HTMLResponse(answer.body)
        response.headers["Content-Security-Policy"] = "default-src 'none'; style-src 'unsafe-inline'"
        return cutoff_response(answer, response)

    # --- customer care -------------------------------------------------------------------

    add_care_routes(app, settings, engine, clock, workspace_source)

    # --- status page ---------------------------------------------------------------------

    def status() -> dict[str, Any]:
        return status_view(settings, engine, clock.now(), workspace_source(), next_up)

    @app.get("/", response_class=HTMLResponse, summary="Status: what runs, what is next")
    async def status_page() -> HTMLResponse:
        view = await run_in_threadpool(status)
        html = pages.get_template("public/status.html").render(s=view)
        return HTMLResponse(html, headers={"Cache-Control": "no-store"})

    @app.get("/api/status", summary="Status as JSON")
    async def status_json() -> JSONResponse:
        view = await run_in_threadpool(status)
        return JSONResponse(view, headers={"Cache-Control": "no-store"})

    # --- operations ----------------------------------------------------------------------

    def health() -> tuple[int, dict[str, Any]]:
        report: dict[str, Any] = {"status": "ok", "database": "ok"}
        healthy = True
        needs = None
        table = Delivery.__table__  # type: ignore[attr-defined]
        try:
            # a snapshot: /healthz answers while another process holds SQLite's write lock
            with read_only(engine) as conn:
                conn.execute(text("SELECT 1"))
                report["backlog"] = int(
                    conn.execute(
                        select(func.count()).where(
                            table.c.state.in_([DeliveryState.pending.value, DeliveryState.retry.value]),
                            table.c.scheduled_for <= clock.now(),
                        )
                    ).scalar_one()
                )
                needs = attention(conn, clock.now())
        except SQLAlchemyError as exc:
            healthy = False
            report["database"] = "unreachable"
            log.warning("health check: database unreachable: %s", type(exc).__name__)
        if health_probe is not None:
            try:
                probe = dict(health_probe())
            except Exception as exc:  # noqa: BLE001 — a broken probe means unhealthy, not a 500
                probe = {"alive": False, "probe_error": type(exc).__name__}
            report.update(probe)
            if probe.get("alive") is False:
                healthy = False
        # Alive, but not sending everything it should: say which and why (200: not a restart case).
        # The probe's own problems (a dead or stuck loop of the daemon) come first.
        problems = [str(p) for p in report.pop("problems", None) or []]
        if needs:
            problems += needs.problems
        if problems:
            report["problems"] = problems
        if not healthy:
            report["status"] = "unavailable"
        elif report["database"] == "ok" and problems:
            report["status"] = "degraded"
        return (200 if healthy else 503), report

    @app.get("/healthz", summary="Liveness and readiness")
    async def healthz() -> JSONResponse:
        status, report = await run_in_threadpool(health)
        return JSONResponse(report, status_code=status, headers={"Cache-Control": "no-store"})

    @app.get("/images/{name:path}", summary="Email images: the workspace's images/ folder")
    def email_image(name: str) -> Response:
        return image_response(settings.images_dir, name)

    def operator_needs() -> metrics.Needs:
        with read_only(engine) as conn:  # a scrape never waits for a writer's lock
            needs = attention(conn, clock.now())
        return metrics.Needs(channels=set(needs.channels), breaker_paused=set(needs.breaker_paused))

    @app.get("/metrics", summary="Prometheus metrics", response_class=PlainTextResponse)
    async def prometheus() -> Response:
        body = await run_in_threadpool(metrics.scrape, engine, operator_needs)
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    return app


async def _form_fields(request: Request) -> dict[str, list[str]]:
    """Form fields of an unsubscribe POST; an unreadable body counts as an empty one (still one click)."""
    fields: dict[str, list[str]] = {}
    content_type = request.headers.get("content-type", "")
    if not content_type.startswith(("application/x-www-form-urlencoded", "multipart/form-data")):
        return fields
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > MAX_FORM_BODY:
        return fields
    try:
        form = await request.form(max_files=0, max_fields=20)
    except Exception:  # noqa: BLE001 — a mangled body from a mail provider must still unsubscribe
        return fields
    for key, value in form.multi_items():
        if isinstance(value, str):
            fields.setdefault(key, []).append(value)
    return fields
