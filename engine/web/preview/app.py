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

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from sqlalchemy.engine import Engine
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from engine.clock import Clock
from engine.settings import Settings
from engine.web.preview.catalog import WorkspaceCatalog, WorkspaceView
from engine.web.preview.livereload import ChangeHub, event_stream, watch_workspace
from engine.web.preview.names import outbox_file
from engine.web.preview.outbox import list_outbox, read_email, read_post
from engine.web.preview.rendering import TemplatePreviews, ViewOptions, dark_mode, weighted_length
from engine.web.preview.season import ReportError, build_chart, read_report, report_path
from engine.web.preview.security import (
    COMMON_HEADERS,
    EMAIL_CSP,
    EMAIL_HEADERS_EXTRA,
    PAGE_CSP,
    allowed_hosts,
    same_origin,
)
from engine.web.preview.sendtest import (
    PER_MINUTE,
    SendTestLimiter,
    SendTestRefused,
    as_test,
    checked_address,
    send_through_channel,
)
from engine.web.preview.serve import split_bind

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

    def __post_init__(self) -> None:
        self.catalog = WorkspaceCatalog(self.settings, self.clock, self.engine)
        self.previews = TemplatePreviews(self.settings, self.clock, self.engine, self.catalog)
        self.limiter = SendTestLimiter(self.clock)

    def files_changed(self, paths: list[Path]) -> None:
        """Drop every cache a saved file may have made stale (called by the watcher)."""
        self.catalog.invalidate()
        self.previews.invalidate(paths)


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
        return self._template_page(
            request, request.path_params["name"], ViewOptions.from_query(request.query_params)
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
        )

    def api_template(self, request: Request) -> Response:
        name = request.path_params["name"]
        info = self.state.catalog.current().template(name)
        if info is None:
            return JSONResponse({"error": f"no template {name!r}"}, status_code=404)
        result = self.state.previews.render(info, ViewOptions.from_query(request.query_params))
        return JSONResponse({"template": info.as_dict(), **result.as_dict()})

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
        return HTMLResponse(html, headers=headers)

    # -- send test ----------------------------------------------------------------------------

    async def send_test_form(self, request: Request) -> Response:
        name = request.path_params["name"]
        form = await request.form()
        fields = {key: str(value) for key, value in form.items() if isinstance(value, str)}
        options = ViewOptions.from_query(fields)
        if not same_origin(request):
            return Response("cross-site request refused", status_code=403)
        outcome, status = await asyncio.to_thread(self._send_test, name, fields.get("to", ""), options)
        if status == 404:
            return _not_found(f"Template {name!r}")
        kind = "ok" if status == 200 else "error"
        return await asyncio.to_thread(
            self._template_page,
            request,
            name,
            options,
            notice={"kind": kind, "text": str(outcome["message"])},
            send_to=fields.get("to", ""),
            status=status,
        )

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
        outcome, status = await asyncio.to_thread(
            self._send_test, request.path_params["name"], fields.get("to", ""), ViewOptions.from_query(fields)
        )
        return JSONResponse(outcome, status_code=status)

    def _send_test(self, name: str, to: str, options: ViewOptions) -> tuple[dict[str, Any], int]:
        from engine.channels import ChannelError

        info = self.state.catalog.current().template(name)
        if info is None:
            return {"ok": False, "message": f"no template {name!r}"}, 404
        if info.kind != "email":
            return {"ok": False, "message": "only email templates can be sent as a test"}, 400
        try:
            address = checked_address(to)
            result = self.state.previews.render(info, options)
            if result.error is not None or result.message is None:
                raise SendTestRefused(f"not sent: the template does not render: {result.error}", 422)
            self.state.limiter.acquire()
            channel, sent = send_through_channel(
                self.state.settings, self.state.clock, as_test(result.message, address)
            )
        except SendTestRefused as exc:
            return {"ok": False, "message": str(exc)}, exc.status
        except ChannelError as exc:
            return {
                "ok": False,
                "message": f"the {self.state.settings.email_channel.value} channel refused: {exc.reason}",
            }, 502
        log.info("preview: test of %s sent to %s through %s", name, address, channel)
        detail = f" (id {sent.provider_message_id})" if sent.provider_message_id else ""
        return {
            "ok": True,
            "message": f"Sent [TEST] {result.subject} to {address} through the {channel} channel{detail}.",
            "channel": channel,
            "provider_message_id": sent.provider_message_id,
        }, 200

    # -- outbox -----------------------------------------------------------------------------------

    def outbox(self, request: Request) -> Response:
        listing = list_outbox(self.state.settings.outbox_path)
        total = sum(listing.total.values())
        return self._page(
            "outbox.html",
            "outbox",
            listing=listing,
            outbox_dir=str(self.state.settings.outbox_path),
            shown=len(listing.entries),
            total=total,
        )

    def api_outbox(self, request: Request) -> Response:
        return JSONResponse(list_outbox(self.state.settings.outbox_path).as_dict())

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

    def _season(self) -> tuple[Any, str | None]:
        try:
            days = read_report(report_path(self.state.settings.var_dir))
        except ReportError as exc:
            return None, str(exc)
        return (build_chart(days) if days is not None else None), None

    def timeline(self, request: Request) -> Response:
        view = self.state.catalog.current()
        chart, error = self._season()
        return self._page(
            "timeline.html",
            "timeline",
            campaigns=[c.as_dict() for c in view.campaigns],
            horizon_days=view.horizon_days,
            now_text=view.now_text,
            chart=chart,
            report_error=error,
            report_file=str(report_path(self.state.settings.var_dir)),
        )

    def api_timeline(self, request: Request) -> Response:
        view = self.state.catalog.current()
        chart, error = self._season()
        return JSONResponse(
            {
                "campaigns": [
                    {"id": c.id, "status": c.status, "next_fires": c.fire_dicts()} for c in view.campaigns
                ],
                "season": chart.as_dict() if chart is not None else None,
                "season_error": error,
            }
        )

    # -- live reload ------------------------------------------------------------------------------

    async def events(self, request: Request) -> Response:
        return StreamingResponse(
            event_stream(self.state.hub),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )


__all__ = ["PreviewState", "create_preview_app"]
