"""The listening sockets of Tidings' servers: the daemon's public app, ``tidings serve`` and the preview.

Each server binds its socket here before it starts, so an address that another process holds is
one line naming the setting (and exit 2) at start, not a log record from inside uvicorn, an exit
code of its own, or a server thread that dies and is restarted in the background.
"""

from __future__ import annotations

import socket

from engine.errors import TidingsError


def split_bind(bind: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:8025`` for IPv6) as a host and a port."""
    host, _sep, port = bind.rpartition(":")
    return host.strip("[]"), int(port)


def bind_socket(host: str, port: int, *, setting: str | None = None) -> socket.socket:
    """A listening socket on ``host:port``; a port of 0 picks a free one (tests).

    ``setting`` names where the address comes from (``TIDINGS_PUBLIC_BIND``), for the refusal.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        shown = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        why = exc.strerror or str(exc)
        if setting is None:
            raise TidingsError(f"cannot listen on {shown}: {why}") from None
        raise TidingsError(
            f"{setting}={shown}: cannot listen there ({why}); another process (another `tidings run`, "
            f"`serve` or `preview`?) holds it: stop it, or set {setting}"
        ) from None
    sock.listen(128)
    sock.setblocking(False)
    return sock


__all__ = ["bind_socket", "split_bind"]
