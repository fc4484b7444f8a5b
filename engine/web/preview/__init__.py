"""The local preview server (``tidings preview``): every template as it will be sent, while editing."""

from engine.web.preview.app import PreviewState, create_preview_app

__all__ = ["PreviewState", "create_preview_app"]
