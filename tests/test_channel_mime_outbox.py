"""How the file outbox puts the written messages on disk."""

from __future__ import annotations

import os
import shutil
from concurrent.futures import ThreadPoolExecutor
from email import policy
from email.parser import BytesParser
from pathlib import Path

import pytest

from engine.channels.outbox import OutboxEmailChannel, write_atomically
from engine.clock import FakeClock
from engine.message import EmailMessage


def message(
    delivery: str = "42", subject: str = "Sărbători fericite", message_id: str | None = None
) -> EmailMessage:
    return EmailMessage(
        to_email="ana.popescu@example.ro",
        to_name="Ana Popescu",
        subject=subject,
        html="<p>Bună!</p>",
        text="Bună!",
        from_email="hello@shop.example.com",
        headers={"X-Tidings-Campaign": "holiday-greetings", "X-Tidings-Delivery": delivery},
        message_id=message_id,
    )


def test_resending_a_delivery_leaves_only_its_message_file(tmp_path: Path, clock: FakeClock) -> None:
    channel = OutboxEmailChannel(tmp_path / "email", now=clock.now)

    for _ in range(3):
        channel.send(message(message_id="<tidings.5f1e2d@shop.example.com>"))

    assert [p.name for p in (tmp_path / "email").iterdir()] == ["42.eml"]
    parsed = BytesParser(policy=policy.default).parsebytes((tmp_path / "email" / "42.eml").read_bytes())
    assert parsed["Message-ID"] == "<tidings.5f1e2d@shop.example.com>"


def test_an_outbox_folder_removed_while_running_is_made_again(tmp_path: Path, clock: FakeClock) -> None:
    channel = OutboxEmailChannel(tmp_path / "email", now=clock.now)
    channel.send(message("1"))
    shutil.rmtree(tmp_path / "email")

    channel.send(message("2"))

    assert [p.name for p in (tmp_path / "email").iterdir()] == ["2.eml"]


def test_threads_writing_the_same_file_leave_one_whole_version(tmp_path: Path) -> None:
    target = tmp_path / "email" / "7.eml"
    versions = [bytes([65 + n]) * 50_000 for n in range(8)]

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda n: write_atomically(target, versions[n % 8]), range(64)))

    assert target.read_bytes() in versions
    assert [p.name for p in target.parent.iterdir()] == ["7.eml"]


@pytest.mark.parametrize("durable", [True, False], ids=["live", "scratch"])
def test_only_a_durable_outbox_waits_for_the_disk_on_every_file(
    tmp_path: Path, clock: FakeClock, monkeypatch: pytest.MonkeyPatch, durable: bool
) -> None:
    synced: list[int] = []
    real_fsync = os.fsync

    def counting_fsync(fd: int) -> None:
        synced.append(fd)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", counting_fsync)
    channel = OutboxEmailChannel(tmp_path / "email", now=clock.now, durable=durable)

    channel.send(message("1"))
    channel.send(message("2"))

    assert len(synced) == (2 if durable else 0)
    assert sorted(p.name for p in (tmp_path / "email").iterdir()) == ["1.eml", "2.eml"]
