"""The benchmark's server front end (uvicorn, ASGI) behaves as the threaded one the tests use,
and the compiled schema check never lets through what ``jsonschema`` refuses."""

from __future__ import annotations

import copy
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from engine.channels import RateLimited
from engine.channels.sendgrid import SendGridChannel, mail_body
from engine.message import EmailMessage

from .asgi import bind_reusable, serve
from .sendgrid_server import SendGridServer, mail_send_validator, rate_limited, schema_errors

API_KEY = "SG.frontend-test-key"


def _message(n: int = 1) -> EmailMessage:
    return EmailMessage(
        to_email=f"ana{n}@example.ro",
        to_name="Ana",
        subject="Comandați până pe 18 decembrie",
        html="<p>Bună!</p>",
        text="Bună!",
        from_email="hello@shop.example.com",
        headers={"X-Tidings-Campaign": "holiday", "X-Tidings-Delivery": str(n)},
    )


SPOILS: list[Callable[[dict[str, Any]], None]] = [
    lambda b: b.update(subject=""),
    lambda b: b.update(subject=5),
    lambda b: b["personalizations"][0]["to"][0].update(email="not-an-address"),
    lambda b: b["personalizations"][0]["to"][0].update(email="a@b"),
    lambda b: b.update(categories=[f"c{n}" for n in range(11)]),
    lambda b: b.update(content=[]),
    lambda b: b.update(personalizations=[]),
    lambda b: b.pop("from"),
    lambda b: b.update(attachments=[{"content": "eA==", "filename": "x.txt", "disposition": "sideways"}]),
    lambda b: b.update(unknown_key=1),
]


@pytest.mark.parametrize("spoil", [None, *SPOILS])
def test_compiled_check_refuses_whatever_jsonschema_refuses(
    spoil: Callable[[dict[str, Any]], None] | None,
) -> None:
    body = copy.deepcopy(mail_body(_message()))
    if spoil is not None:
        spoil(body)

    reference = sorted(mail_send_validator().iter_errors(body), key=lambda e: list(e.absolute_path))

    assert [e.message for e in schema_errors(body)] == [e.message for e in reference]


@pytest.fixture
def asgi_server() -> Iterator[tuple[SendGridServer, str]]:
    service = SendGridServer(api_key=API_KEY)
    sock = bind_reusable(0)
    stop = threading.Event()
    runner = threading.Thread(target=serve, args=(service, sock, stop.wait), daemon=True)
    runner.start()
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            httpx.get(url + "/", timeout=1)
            break
        except httpx.TransportError:
            time.sleep(0.05)
    yield service, url
    stop.set()
    runner.join(timeout=10)
    sock.close()


def test_uvicorn_front_end_accepts_and_records_like_the_threaded_server(
    asgi_server: tuple[SendGridServer, str],
) -> None:
    service, url = asgi_server
    channel = SendGridChannel(API_KEY, host=url, timeout=5)

    results = [channel.send(_message(n)) for n in range(3)]
    channel.close()

    accepted = service.accepted
    assert [r.provider_message_id for r in results] == [mail.message_id for mail in accepted]
    assert accepted[0].headers["Authorization"] == f"Bearer {API_KEY}"
    assert accepted[2].body["personalizations"][0]["custom_args"]["delivery_id"] == "2"
    assert service.accepted_count == 3


def test_uvicorn_front_end_serves_scripted_faults(asgi_server: tuple[SendGridServer, str]) -> None:
    service, url = asgi_server
    service.faults.script(rate_limited(retry_after=7))
    channel = SendGridChannel(API_KEY, host=url, timeout=5)

    with pytest.raises(RateLimited) as caught:
        channel.send(_message())
    channel.close()

    assert caught.value.retry_after == 7
    assert service.statuses[429] == 1


def test_both_front_ends_refuse_an_invalid_body_with_the_same_answer(
    asgi_server: tuple[SendGridServer, str],
) -> None:
    _, url = asgi_server
    body = mail_body(_message()) | {"subject": ""}
    headers = {"Authorization": f"Bearer {API_KEY}"}

    with SendGridServer(api_key=API_KEY) as threaded:
        expected = httpx.post(threaded.url + "/v3/mail/send", json=body, headers=headers, timeout=5)
    answered = httpx.post(url + "/v3/mail/send", json=body, headers=headers, timeout=5)

    assert answered.status_code == expected.status_code == 400
    assert answered.json() == expected.json()


def test_without_recording_only_counts_are_kept() -> None:
    with SendGridServer(api_key=API_KEY, recording=False) as server:
        channel = SendGridChannel(API_KEY, host=server.url, timeout=5)
        channel.send(_message())
        channel.close()

        assert server.accepted == [] and server.exchanges == []
        assert server.accepted_count == 1 and server.statuses[202] == 1
