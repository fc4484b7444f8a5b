"""``tidings preview``: serves the workspace, stops on Ctrl-C with a page open, says why it cannot start."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from engine.cli import main

TIDINGS = str(Path(sys.executable).with_name("tidings"))


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _workspace(root: Path) -> Path:
    card = root / "templates" / "card"
    card.mkdir(parents=True)
    (card / "post.txt").write_text("Order by Dec 19!\n")
    return root


def test_preview_serves_the_workspace_and_stops_on_ctrl_c_with_a_page_listening(tmp_path: Path) -> None:
    port = _free_port()
    env = {**os.environ, "TIDINGS_WORKSPACE": str(_workspace(tmp_path)), "TIDINGS_SECRET_KEY": "c" * 40}
    process = subprocess.Popen(
        [TIDINGS, "preview", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                api = httpx.get(f"{base}/api/templates/card", timeout=5)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline or process.poll() is not None:
                    pytest.fail(f"preview did not start: {process.stderr.read() if process.stderr else ''}")
                time.sleep(0.1)
        assert api.json()["text"] == "Order by Dec 19!"
        with httpx.stream("GET", f"{base}/events", timeout=5) as events:
            assert next(events.iter_lines()) == "retry: 1000"
            process.send_signal(signal.SIGINT)
            assert process.wait(timeout=15) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    out = process.stdout.read() if process.stdout else ""
    assert f"on http://127.0.0.1:{port}/" in out


def test_preview_on_a_busy_port_is_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]

        code = main(["--workspace", str(_workspace(tmp_path)), "preview", "--port", str(port)])

    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith(f"tidings: cannot listen on 127.0.0.1:{port}:") and err.count("\n") == 1


@pytest.mark.parametrize(
    ("command", "setting"), [("serve", "TIDINGS_PUBLIC_BIND"), ("preview", "TIDINGS_PREVIEW_BIND")]
)
def test_a_server_on_a_busy_address_names_its_setting_in_one_line_and_exits_2(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    command: str,
    setting: str,
) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        monkeypatch.setenv(setting, f"127.0.0.1:{port}")
        monkeypatch.setenv("TIDINGS_DATABASE_URL", f"sqlite:///{tmp_path / 'tidings.db'}")

        code = main(["--workspace", str(_workspace(tmp_path)), command])

    err = capsys.readouterr().err.splitlines()
    assert code == 2
    assert err[-1].startswith(f"tidings: {setting}=127.0.0.1:{port}: cannot listen there (")
    assert not [line for line in err if "Traceback" in line or "ERROR" in line]
