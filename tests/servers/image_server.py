"""A tiny image host on 127.0.0.1 (a CDN that templates point at): some paths answer, others not."""

from __future__ import annotations

from servers.httpbase import FakeHttpService, Reply, Request


class ImageServer(FakeHttpService):
    """``/ok/*`` answers 200 ``image/png``, ``/page/*`` 200 ``text/html`` (not an image), others 404."""

    def handle(self, request: Request) -> Reply:
        if request.path.startswith("/ok/"):
            return Reply(200, headers={"Content-Type": "image/png"})
        if request.path.startswith("/page/"):
            return Reply(200, headers={"Content-Type": "text/html; charset=utf-8"})
        return Reply(404)
