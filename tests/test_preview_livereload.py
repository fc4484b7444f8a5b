"""Live reload: the change hub and its server-sent events stream, and the file watcher behind them."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from engine.web.preview.livereload import ChangeHub, event_stream, watch_workspace


async def _next_event(stream: object) -> tuple[str, dict[str, object]]:
    while True:
        chunk = await stream.__anext__()  # type: ignore[attr-defined]
        if chunk.startswith("event: "):
            head, data = chunk.strip().split("\n", 1)
            return head.removeprefix("event: "), json.loads(data.removeprefix("data: "))


def test_stream_starts_with_the_current_version_so_a_page_can_tell_it_missed_a_change() -> None:
    async def scenario() -> None:
        hub = ChangeHub()
        hub.publish(["templates/a/email.mjml"])
        stream = event_stream(hub)
        assert await stream.__anext__() == "retry: 1000\n\n"
        assert await _next_event(stream) == ("hello", {"version": hub.version})
        assert hub.version.endswith(":1")
        await stream.aclose()

    asyncio.run(scenario())


def test_every_open_page_hears_about_a_saved_file() -> None:
    async def scenario() -> None:
        hub = ChangeHub()
        streams = [event_stream(hub) for _ in range(2)]
        for stream in streams:
            await _next_event(stream)  # hello (subscribed from here on)
        hub.publish(["templates/b/email.mjml", "campaigns/x.yaml"])
        for stream in streams:
            kind, data = await _next_event(stream)
            assert kind == "change"
            assert data["paths"] == ["campaigns/x.yaml", "templates/b/email.mjml"]
        for stream in streams:
            await stream.aclose()
        assert hub.subscriber_count == 0

    asyncio.run(scenario())


def test_closing_the_hub_ends_open_streams_so_the_server_can_stop() -> None:
    async def scenario() -> None:
        hub = ChangeHub()
        stream = event_stream(hub)
        await _next_event(stream)
        hub.close()
        rest = [chunk async for chunk in stream]
        assert rest == []

    asyncio.run(asyncio.wait_for(scenario(), 5))


def test_saving_a_template_file_publishes_its_workspace_path(tmp_path: Path) -> None:
    template = tmp_path / "templates" / "greeting" / "email.mjml"
    template.parent.mkdir(parents=True)
    template.write_text("<mjml></mjml>")
    (tmp_path / "var").mkdir()
    dropped: list[list[Path]] = []

    async def scenario() -> dict[str, object]:
        hub = ChangeHub()
        stop = asyncio.Event()
        watcher = asyncio.create_task(watch_workspace(tmp_path, hub, dropped.append, stop))
        stream = event_stream(hub)
        await _next_event(stream)
        await asyncio.sleep(0.3)  # let inotify set up its watches on the real folder
        (tmp_path / "var" / "tidings.db").write_text("not watched")
        template.write_text("<mjml><mj-body></mj-body></mjml>")
        _kind, data = await asyncio.wait_for(_next_event(stream), 5)
        stop.set()
        await asyncio.wait_for(watcher, 5)
        await stream.aclose()
        return data

    data = asyncio.run(scenario())

    assert data["paths"] == ["templates/greeting/email.mjml"]
    assert dropped and template in dropped[0]
