"""The workspace's ``images/`` folder, served at ``/images/NAME`` by the public app and the preview.

Email images need a public address. Unless ``TIDINGS_SHOP__IMAGES_URL`` names a CDN or the
shop's store, templates point at ``TIDINGS_PUBLIC_URL/images`` (``{{ shop.images_url }}``), which
the public app serves from here: public wherever real mail goes out (the unsubscribe links
need that already), and local in development, so the demo's images load with no shop behind
them. The preview serves the same files itself, so its pages are whole without a
daemon.

Only raster image types are served (no SVG: it can carry script, and mail clients do not show
it), never a hidden file, never outside the folder; each answer forbids sniffing and scripts.
"""

from __future__ import annotations

from pathlib import Path

from starlette.responses import FileResponse, PlainTextResponse, Response

IMAGE_TYPES = {
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".gif": "image/gif",
    ".webp": "image/webp",
}
HEADERS = {
    "Cache-Control": "public, max-age=3600",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'none'; sandbox",
}


def image_file(images_dir: Path, name: str) -> Path | None:
    """The file ``name`` names inside ``images_dir``, or None when it is not a servable image."""
    parts = name.split("/")
    if not name or any(not part or part.startswith(".") or "\\" in part or "\0" in part for part in parts):
        return None
    if Path(name).suffix.lower() not in IMAGE_TYPES:
        return None
    try:
        root = images_dir.resolve(strict=True)
        path = (root / name).resolve(strict=True)
    except (OSError, RuntimeError):
        return None
    if not path.is_relative_to(root) or not path.is_file():
        return None
    return path


def image_response(images_dir: Path, name: str) -> Response:
    """The image, or a plain 404."""
    path = image_file(images_dir, name)
    if path is None:
        return PlainTextResponse("no such image\n", status_code=404, headers={"Cache-Control": "no-store"})
    return FileResponse(path, media_type=IMAGE_TYPES[path.suffix.lower()], headers=HEADERS)


def local_images(html: str, public_images_url: str, local_base: str = "/images") -> str:
    """The HTML with the public app's image addresses pointed at ``local_base`` (the preview's own).

    Only for the page that shows a message: the preview serves ``images/`` itself, so its pages
    are whole without a daemon; what is sent (and the HTML source tab) keeps the public address.
    """
    return html.replace(public_images_url.rstrip("/") + "/", local_base.rstrip("/") + "/")
