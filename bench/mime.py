"""What does turning a rendered email into RFC 5322 bytes cost, per message?

Renders every shipped email template in en/ro/et once with its ``sample.yaml`` (real HTML
and text parts, real subjects with diacritics, the renderer's headers), then writes each
message repeatedly with

* **direct** — ``engine.channels.mime.message_bytes``, what the outbox and SMTP channels use;
* **email package** — ``build_mime(...).as_bytes()``, the ``email`` package's writer
  (``policy.SMTP``), what the channels used before.

Figures are process CPU time per message, the best of ``--rounds`` passes (a burst of load
on a shared machine only makes a pass slower). Also checks, for every message, that a parser
reads the same subject and bodies from both outputs, so a fast wrong writer cannot pass.

Run: ``.venv/bin/python bench/mime.py [--repeat 200] [--rounds 5] [--json]``
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from email import policy
from email.parser import BytesParser
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from engine.channels.mime import build_mime, message_bytes, message_id_for  # noqa: E402
from engine.message import EmailMessage  # noqa: E402
from engine.render import Renderer, load_sample, sample_context  # noqa: E402
from engine.render.checks import written_as_marketing  # noqa: E402
from engine.settings import load_settings  # noqa: E402

LOCALES = ("en", "ro", "et")
DATE = datetime(2026, 12, 14, 9, 0, tzinfo=UTC)


def _messages() -> list[EmailMessage]:
    with tempfile.TemporaryDirectory() as scratch:
        settings = load_settings(workspace=scratch, secret_key="bench-secret-key-0123456789abcdefghij")
        renderer = Renderer(settings, ROOT / "templates")
        messages: list[EmailMessage] = []
        for name in renderer.templates():
            if renderer.kind(name) != "email":
                continue
            sample = load_sample(ROOT / "templates" / name / "sample.yaml", settings)
            marketing = written_as_marketing(renderer, name)  # service messages have no unsubscribe link
            for locale in LOCALES:
                context = sample_context(sample, settings)
                messages.append(
                    renderer.render_email(
                        name,
                        context,
                        locale=locale,
                        campaign_id="bench",
                        step_id="s",
                        delivery_id=len(messages),
                        marketing=marketing,
                    )
                )
        return messages


def _best_seconds_per_message(
    write: Callable[[EmailMessage], bytes], messages: list[EmailMessage], repeat: int, rounds: int
) -> float:
    best = float("inf")
    for _ in range(rounds):
        started = time.process_time()
        for _ in range(repeat):
            for message in messages:
                write(message)
        best = min(best, (time.process_time() - started) / (repeat * len(messages)))
    return best


def _direct(message: EmailMessage) -> bytes:
    return message_bytes(message, message_id=message_id_for(message), date=DATE)


def _email_package(message: EmailMessage) -> bytes:
    return build_mime(message, message_id=message_id_for(message), date=DATE).as_bytes()


def _check_same_reading(messages: list[EmailMessage]) -> None:
    parser = BytesParser(policy=policy.default)
    for message in messages:
        ours, theirs = parser.parsebytes(_direct(message)), parser.parsebytes(_email_package(message))
        assert str(ours["Subject"]) == message.subject
        # The email package folds a long encoded subject onto a continuation line right after
        # "Subject:", which parsers read back with a leading space: compare the reference without it.
        assert str(theirs["Subject"]).lstrip() == message.subject
        for kind in ("plain", "html"):
            mine, reference = ours.get_body((kind,)), theirs.get_body((kind,))
            assert mine is not None and reference is not None
            assert mine.get_content() == reference.get_content()  # type: ignore[attr-defined]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=100, help="passes over all messages per round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv if argv is not None else sys.argv[1:])

    messages = _messages()
    _check_same_reading(messages)
    slow_repeat = max(1, args.repeat // 10)
    direct = _best_seconds_per_message(_direct, messages, args.repeat, args.rounds)
    stdlib = _best_seconds_per_message(_email_package, messages, slow_repeat, args.rounds)
    size = sum(len(_direct(m)) for m in messages) / len(messages)
    figures = {
        "messages": len(messages),
        "mean_bytes": round(size),
        "direct_us_per_message": round(direct * 1e6, 1),
        "email_package_us_per_message": round(stdlib * 1e6, 1),
        "speedup": round(stdlib / direct, 1),
    }
    if args.json:
        print(json.dumps(figures))
    else:
        for key, value in figures.items():
            print(f"{key:>30}: {value}")
        print(
            f"RESULT direct writer {figures['direct_us_per_message']} µs per message, "
            f"{figures['speedup']}x faster than the email package"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
