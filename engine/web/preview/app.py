"""The preview app: every template as it will be sent, while the marketer edits it.

Datasette-style: pages are rendered on the server with Jinja (autoescaped), a little
script adds live reload and tabs, and everything a page shows is also served as JSON
under ``/api/…`` for tests and scripts. Handlers are plain functions (Starlette runs
them in its thread pool), because rendering and reading the outbox touch the disk.

Routes::

    GET  /                               campaigns and templates, with problems and next fires
    GET  /templates/{name}               one template: iframe, text part, source, checks, send test
    GET  /render/{name}                  the rendered HTML alone (what the iframe shows)
    POST /templates/{name}/send-test     send it to one address through the email channel
    GET  /outbox, /outbox/{kind}/{file}  what the file outbox holds
    GET  /outbox/email/{file}/html       one outbox message's HTML part
    GET  /timeline                       upcoming fires and the simulated season
    GET  /images/{name}                  the workspace's images/ (as the public app serves them)
    GET  /events                         server-sent events: one per batch of saved files
    GET  /api/campaigns, /api/templates, /api/templates/{name}, /api/outbox,
        /api/outbox/{kind}/{file}, /api/timeline;  POST /api/templates/{name}/send-test
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from sqlalchemy.engine import Engine
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from engine.clock import Clock
from engine.display import local_text, zone_label
from engine.settings import Settings
from engine.web.images import image_response, local_images
from engine.web.listen import split_bind
from engine.web.preview.ab_verdicts import template_tests
from engine.web.preview.catalog import WorkspaceCatalog, WorkspaceView
from engine.web.preview.livereload import ChangeHub, event_stream, watch_workspace
from engine.web.preview.names import outbox_file
from engine.web.preview.outbox import (
    InvalidQuery,
    OutboxListing,
    OutboxQuery,
    list_outbox,
    read_email,
    read_post,
)
from engine.web.preview.rendering import TemplatePreviews, ViewOptions, dark_mode, weighted_length
from engine.web.preview.season import (
    DAY_FORMAT,
    Coverage,
    ReportError,
    SeasonChart,
    SimulationRun,
    build_chart,
    coverage,
    read_report,
    report_path,
)
from engine.web.preview.security import (
    COMMON_HEADERS,
    EMAIL_CSP,
    EMAIL_HEADERS_EXTRA,
    PAGE_CSP,
    allowed_hosts,
    same_origin,
)
from engine.web.preview.sendtest import PER_MINUTE, Notices, SendTestLimiter, SendTestOutcome, send_test

log = logging.getLogger(__name__)

WEB_DIR = Path(__file__).resolve().parent.parent
TEMPLATES_DIR = WEB_DIR / "templates"
STATIC_DIR = WEB_DIR / "static"


@dataclass
class PreviewState:
    """Everything the handlers share; one per app."""

    settings: Settings
    clock: Clock
    engine: Engine | None
    hub: ChangeHub = field(default_factory=ChangeHub)
    catalog: WorkspaceCatalog = field(init=False)
    previews: TemplatePreviews = field(init=False)
    limiter: SendTestLimiter = field(init=False)
    notices: Notices = field(init=False)

    def __post_init__(self) -> None:
        self.catalog = WorkspaceCatalog(self.settings, self.clock, self.engine)
        self.previews = TemplatePreviews(self.settings, self.clock, self.engine, self.catalog)
        self.limiter = SendTestLimiter(self.clock)
        self.notices = Notices(self.clock)

    def files_changed(self, paths: list[Path]) -> None:
        """Drop every cache a saved file may have made stale (called by the watcher)."""
        self.catalog.invalidate()
        self.previews.invalidate(paths)


@dataclass(frozen=True, slots=True)
class SeasonView:
    """The last simulation as the timeline shows it: the run, its chart and its coverage, or an error."""

    run: SimulationRun | None = None
    chart: SeasonChart | None = None
    coverage: Coverage | None = None
    error: str | None = None


class _SecurityHeaders:
    """Adds :data:`COMMON_HEADERS` everywhere and the page CSP where a handler did not set its own."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def add_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = message.setdefault("headers", [])
                present = {name.lower() for name, _ in headers}
                for name, value in COMMON_HEADERS.items():
                    if name.lower().encode() not in present:
                        headers.append((name.lower().encode(), value.encode()))
                if b"content-security-policy" not in present:
                    headers.append((b"content-security-policy", PAGE_CSP.encode()))
            await send(message)

        await self.app(scope, receive, add_headers)


def _page_environment() -> Environment:
    return Environment(
        loader=FileSystemLoader(TEMPLATES_DIR),
        autoescape=select_autoescape(default=True, default_for_string=True),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def create_preview_app(
    settings: Settings, *, engine: Engine | None = None, clock: Clock, watch: bool = True
) -> Starlette:
    """The preview app for ``settings``' workspace.

    ``engine`` enables the contact picker (a sample from the database); ``watch`` starts
    the file watcher that drives live reload (tests of single pages turn it off).
    """
    state = PreviewState(settings=settings, clock=clock, engine=engine)
    pages = _Pages(state, _page_environment())
    bind_host, _port = split_bind(settings.preview_bind)

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        stop = asyncio.Event()
        task = None
        if watch:
            task = asyncio.create_task(
                watch_workspace(settings.workspace_dir, state.hub, state.files_changed, stop),
                name="preview-watch",
            )
        try:
            yield
        finally:
            state.hub.close()
            stop.set()
            if task is not None:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await asyncio.wait_for(task, 2)

    routes = [
        Route("/", pages.index),
        Route("/templates/{name}", pages.template),
        Route("/templates/{name}/send-test", pages.send_test_form, methods=["POST"]),
        Route("/render/{name}", pages.rendered_html),
        Route("/outbox", pages.outbox),
        Route("/outbox/email/{file}/html", pages.outbox_html),
        Route("/outbox/{kind}/{file}", pages.outbox_item),
        Route("/timeline", pages.timeline),
        Route("/images/{name:path}", pages.image),
        Route("/events", pages.events),
        Route("/api/campaigns", pages.api_campaigns),
        Route("/api/templates", pages.api_templates),
        Route("/api/templates/{name}", pages.api_template),
        Route("/api/templates/{name}/send-test", pages.send_test_api, methods=["POST"]),
        Route("/api/outbox", pages.api_outbox),
        Route("/api/outbox/{kind}/{file}", pages.api_outbox_item),
        Route("/api/timeline", pages.api_timeline),
        Mount("/static", StaticFiles(directory=STATIC_DIR), name="static"),
    ]
    middleware = [
        Middleware(TrustedHostMiddleware, allowed_hosts=allowed_hosts(bind_host)),
        Middleware(_SecurityHeaders),
    ]
    app = Starlette(routes=routes, middleware=middleware, lifespan=lifespan)
    app.state.preview = state
    return app


def _not_found(what: str) -> Response:
    return HTMLResponse(
        f"<!doctype html><title>Not found</title><p>{_escape(what)} not found.</p>", status_code=404
    )


def _escape(text: str) -> str:
    from markupsafe import escape

    return str(escape(text))


def _merged(item: dict[str, Any], more: list[dict[str, Any]]) -> dict[str, Any]:
    seen = {p["text"] for p in item["problems"]}
    item["problems"] = item["problems"] + [p for p in more if p["text"] not in seen]
    return item


class _Pages:
    """The handlers. Each reads the request, asks the state, renders a page or JSON."""

    def __init__(self, state: PreviewState, env: Environment) -> None:
        self.state = state
        self.env = env

    # -- helpers ----------------------------------------------------------------------------

    def _page(self, page: str, section: str, status: int = 200, **context: Any) -> HTMLResponse:
        template = self.env.get_template(f"preview/{page}")
        html = template.render(version=self.state.hub.version, section=section, **context)
        return HTMLResponse(html, status_code=status)

    # -- index --------------------------------------------------------------------------------

    def index(self, request: Request) -> Response:
        view = self.state.catalog.current()
        return self._page(
            "index.html",
            "index",
            workspace=str(self.state.settings.workspace_dir),
            campaigns=self._campaigns_with_checks(view),
            templates=self._templates_with_checks(view),
            general_problems=view.general_problems + self._unplaced_checks(view),
        )

    def api_campaigns(self, request: Request) -> Response:
        view = self.state.catalog.current()
        return JSONResponse(
            {"campaigns": self._campaigns_with_checks(view), "problems": view.problem_dicts()}
        )

    def api_templates(self, request: Request) -> Response:
        view = self.state.catalog.current()
        return JSONResponse({"templates": self._templates_with_checks(view)})

    def _templates_with_checks(self, view: WorkspaceView) -> list[dict[str, Any]]:
        """Templates with their workspace problems and ``validate``'s checks of their samples."""
        checks = self.state.catalog.checks().by_template
        return [_merged(info.as_dict(), checks.get(info.name, [])) for info in view.templates]

    def _campaigns_with_checks(self, view: WorkspaceView) -> list[dict[str, Any]]:
        """Campaigns with their problems, including templates' names checked against their flows."""
        checks = self.state.catalog.checks().by_file
        return [_merged(info.as_dict(), checks.get(info.file, [])) for info in view.campaigns]

    def _unplaced_checks(self, view: WorkspaceView) -> list[dict[str, Any]]:
        files = {info.file for info in view.campaigns}
        by_file = self.state.catalog.checks().by_file
        return [p for path, found in sorted(by_file.items()) if path not in files for p in found]

    # -- one template -----------------------------------------------------------------------------

    def template(self, request: Request) -> Response:
        notice = self.state.notices.get(request.query_params.get("notice", ""))
        return self._template_page(
            request,
            request.path_params["name"],
            ViewOptions.from_query(request.query_params),
            notice={"kind": notice.kind, "text": notice.text} if notice else None,
            send_to=notice.send_to if notice else "",
        )

    def _template_page(
        self,
        request: Request,
        name: str,
        options: ViewOptions,
        *,
        notice: dict[str, str] | None = None,
        send_to: str = "",
        status: int = 200,
    ) -> Response:
        info = self.state.catalog.current().template(name)
        if info is None:
            return _not_found(f"Template {name!r}")
        result = self.state.previews.render(info, options)
        query = options.query(locale=result.locale)
        return self._page(
            "template.html",
            "index",
            status=status,
            t=info.as_dict(),
            view={**options.as_dict(), "locale": result.locale},
            r=result.as_dict(),
            frame_url=f"/render/{info.name}?{query}",
            api_url=f"/api/templates/{info.name}?{query}",
            notice=notice,
            send_to=send_to,
            channel=self.state.settings.email_channel.value,
            per_minute=PER_MINUTE,
            recent_contacts=self.state.previews.recent_contacts(),
            images_note=self._images_note(),
            ab_tests=self._ab_tests(info.name),
        )

    def _ab_tests(self, name: str) -> list[dict[str, Any]]:
        return template_tests(self.state.catalog.current().workspace, self.state.engine, name)

    def _images_note(self) -> str | None:
        settings = self.state.settings
        if not settings.images_served_by_public_app:
            return None
        return (
            f"Images from images/, shown here by the preview; in the message they load from "
            f"{settings.public_images_url}/ (the public app), or set TIDINGS_SHOP__IMAGES_URL."
        )

    def api_template(self, request: Request) -> Response:
        name = request.path_params["name"]
        info = self.state.catalog.current().template(name)
        if info is None:
            return JSONResponse({"error": f"no template {name!r}"}, status_code=404)
        result = self.state.previews.render(info, ViewOptions.from_query(request.query_params))
        return JSONResponse(
            {"template": info.as_dict(), **result.as_dict(), "ab_tests": self._ab_tests(name)}
        )

    def rendered_html(self, request: Request) -> Response:
        name = request.path_params["name"]
        info = self.state.catalog.current().template(name)
        if info is None:
            return _not_found(f"Template {name!r}")
        options = ViewOptions.from_query(request.query_params)
        result = self.state.previews.render(info, options)
        headers = {"Content-Security-Policy": EMAIL_CSP, **EMAIL_HEADERS_EXTRA}
        if result.error is not None:
            html = self.env.get_template("preview/render_error.html").render(error=result.error)
            return HTMLResponse(html, status_code=422, headers=headers)
        if result.kind != "email" or result.html is None:
            return _not_found(f"HTML for {name!r}")
        html = dark_mode(result.html) if options.theme == "dark" else result.html
        if self.state.settings.images_served_by_public_app:
            html = local_images(html, self.state.settings.public_images_url)
        return HTMLResponse(html, headers=headers)

    # -- send test ----------------------------------------------------------------------------

    async def send_test_form(self, request: Request) -> Response:
        """POST-redirect-GET: send, remember the outcome, and redirect to the page that shows it."""
        name = request.path_params["name"]
        form = await request.form()
        fields = {key: str(value) for key, value in form.items() if isinstance(value, str)}
        options = ViewOptions.from_query(fields)
        if not same_origin(request):
            return Response("cross-site request refused", status_code=403)
        to = fields.get("to", "")
        outcome = await asyncio.to_thread(self._send_test, name, to, options)
        if outcome.status == 404:
            return _not_found(f"Template {name!r}")
        notice = self.state.notices.add(outcome, to)
        query = options.query()
        target = f"/templates/{quote(name, safe='')}?{query + '&' if query else ''}notice={notice}#send-test"
        return RedirectResponse(target, status_code=303)

    async def send_test_api(self, request: Request) -> Response:
        if not same_origin(request):
            return JSONResponse({"error": "cross-site request refused"}, status_code=403)
        try:
            body = await request.json()
        except ValueError:
            return JSONResponse({"error": "expected a JSON object"}, status_code=400)
        if not isinstance(body, dict):
            return JSONResponse({"error": "expected a JSON object"}, status_code=400)
        fields = {key: str(value) for key, value in body.items() if value is not None}
        outcome = await asyncio.to_thread(
            self._send_test, request.path_params["name"], fields.get("to", ""), ViewOptions.from_query(fields)
        )
        return JSONResponse(outcome.as_dict(), status_code=outcome.status)

    def _send_test(self, name: str, to: str, options: ViewOptions) -> SendTestOutcome:
        state = self.state
        info = state.catalog.current().template(name)
        return send_test(
            state.settings, state.clock, state.previews, info, name, to, options, limiter=state.limiter
        )

    # -- outbox -----------------------------------------------------------------------------------

    def _outbox_listing(self, request: Request) -> tuple[OutboxListing | None, str | None]:
        try:
            query = OutboxQuery.from_query(request.query_params)
        except InvalidQuery as exc:
            return None, str(exc)
        settings = self.state.settings
        return list_outbox(settings.outbox_path, query=query, zone=settings.zone), None

    def outbox(self, request: Request) -> Response:
        listing, error = self._outbox_listing(request)
        if listing is None:
            listing = list_outbox(self.state.settings.outbox_path)
            listing = OutboxListing([], listing.total)
        zone = self.state.settings.zone
        view = self.state.catalog.current()
        return self._page(
            "outbox.html",
            "outbox",
            status=400 if error else 200,
            listing=listing,
            query={
                key: request.query_params.get(key, "")
                for key in ("address", "campaign", "subject", "from", "to")
            },
            query_error=error,
            campaign_ids=[c.id for c in view.campaigns],
            outbox_dir=str(self.state.settings.outbox_path),
            total=sum(listing.total.values()),
            when=lambda entry: local_text(entry.when, zone),
            zone_label=zone_label(zone),
        )

    def api_outbox(self, request: Request) -> Response:
        listing, error = self._outbox_listing(request)
        if listing is None:
            return JSONResponse({"error": error}, status_code=400)
        return JSONResponse(listing.as_dict())

    def _outbox_path(self, request: Request) -> tuple[str, Path] | None:
        kind = str(request.path_params.get("kind", "email"))
        path = outbox_file(self.state.settings.outbox_path, kind, request.path_params["file"])
        return None if path is None else (kind, path)

    def outbox_item(self, request: Request) -> Response:
        found = self._outbox_path(request)
        if found is None:
            return _not_found("Outbox file")
        kind, path = found
        try:
            if kind == "email":
                return self._page("outbox_email.html", "outbox", m=read_email(path))
            post = read_post(path)
        except (OSError, ValueError, UnicodeDecodeError) as exc:
            return HTMLResponse(
                f"<!doctype html><p>Cannot read {_escape(path.name)}: {_escape(str(exc))}</p>", 422
            )
        length, valid = weighted_length(str(post.get("text", "")))
        return self._page(
            "outbox_post.html", "outbox", post=post, name=path.name, weighted_length=length, valid=valid
        )

    def api_outbox_item(self, request: Request) -> Response:
        found = self._outbox_path(request)
        if found is None:
            return JSONResponse({"error": "no such outbox file"}, status_code=404)
        kind, path = found
        try:
            if kind == "email":
                return JSONResponse(read_email(path).as_dict())
            return JSONResponse({"kind": "social", "name": path.name, **read_post(path)})
        except (OSError, ValueError, UnicodeDecodeError) as exc:
            return JSONResponse({"error": f"cannot read {path.name}: {exc}"}, status_code=422)

    def outbox_html(self, request: Request) -> Response:
        found = self._outbox_path(request)
        if found is None:
            return _not_found("Outbox file")
        message = read_email(found[1])
        if message.html is None:
            return _not_found("HTML part")
        return HTMLResponse(
            message.html, headers={"Content-Security-Policy": EMAIL_CSP, **EMAIL_HEADERS_EXTRA}
        )

    # -- timeline ---------------------------------------------------------------------------------

    def _season(self, view: WorkspaceView) -> SeasonView:
        try:
            run = read_report(report_path(self.state.settings.var_dir))
        except ReportError as exc:
            return SeasonView(error=str(exc))
        if run is None:
            return SeasonView()
        dated = {c.id: c.dates for c in view.campaigns if c.dates is not None and c.status == "active"}
        return SeasonView(run=run, chart=build_chart(run), coverage=coverage(run, dated))

    def timeline(self, request: Request) -> Response:
        view = self.state.catalog.current()
        season = self._season(view)
        zone = self.state.settings.zone
        return self._page(
            "timeline.html",
            "timeline",
            campaigns=[c.as_dict() for c in view.campaigns],
            horizon_days=view.horizon_days,
            now_text=view.now_text,
            season=season,
            zone_label=zone_label(zone),
            generated=local_text(season.run.generated_at, zone)
            if season.run and season.run.generated_at
            else None,
            day=lambda d: d.strftime(DAY_FORMAT),
            report_file=str(report_path(self.state.settings.var_dir)),
        )

    def api_timeline(self, request: Request) -> Response:
        view = self.state.catalog.current()
        season = self._season(view)
        return JSONResponse(
            {
                "campaigns": [
                    {"id": c.id, "status": c.status, "next_fires": c.fire_dicts()} for c in view.campaigns
                ],
                "simulation": season.run.as_dict() if season.run is not None else None,
                "coverage": season.coverage.as_dict() if season.coverage is not None else None,
                "season": season.chart.as_dict() if season.chart is not None else None,
                "season_error": season.error,
            }
        )

    # -- images -----------------------------------------------------------------------------------

    def image(self, request: Request) -> Response:
        return image_response(self.state.settings.images_dir, request.path_params["name"])

    # -- live reload ------------------------------------------------------------------------------

    async def events(self, request: Request) -> Response:
        return StreamingResponse(
            event_stream(self.state.hub),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )


__all__ = ["PreviewState", "create_preview_app"]
