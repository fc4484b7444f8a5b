"""What every channel shares: classified errors, provider rate-limit hints, safe names."""

from __future__ import annotations

import pickle
from datetime import UTC, datetime, timedelta

from engine.channels.base import (
    PermanentFailure,
    RateLimited,
    TransientFailure,
    one_line,
    rate_limit_hint,
    safe_token,
)

NOW = datetime(2026, 12, 14, 9, 0, tzinfo=UTC)


def test_classified_errors_survive_pickling_with_their_retry_hints() -> None:
    limited = RateLimited("SendGrid 429: too many requests", 30.0, NOW + timedelta(seconds=30))

    copies = [
        pickle.loads(pickle.dumps(e)) for e in (limited, TransientFailure("X 503", 5), PermanentFailure("no"))
    ]

    assert isinstance(copies[0], RateLimited)
    assert (copies[0].reason, copies[0].retry_after, copies[0].reset_at) == (
        limited.reason,
        30.0,
        NOW + timedelta(seconds=30),
    )
    assert (copies[1].reason, copies[1].retry_after) == ("X 503", 5.0)
    assert isinstance(copies[2], PermanentFailure) and copies[2].reason == "no"


def test_error_text_is_one_short_line_without_secrets() -> None:
    text = one_line("401:\n  bad key SG.abc123secret\r\n" + "x" * 2000, ["SG.abc123secret"])

    assert "\n" not in text and "SG.abc123secret" not in text and "***" in text
    assert len(text) <= 500


def test_retry_after_as_an_http_date_gives_the_seconds_until_then() -> None:
    seconds, reset_at = rate_limit_hint(NOW, retry_after="Mon, 14 Dec 2026 09:02:00 GMT")

    assert (seconds, reset_at) == (120.0, NOW + timedelta(minutes=2))


def test_unparsable_rate_limit_headers_leave_the_backoff_to_the_dispatcher() -> None:
    assert rate_limit_hint(NOW, retry_after="soon", reset_epoch="later") == (None, None)


def test_delivery_ids_become_distinct_safe_names() -> None:
    assert safe_token("1042") == "1042"
    assert "/" not in safe_token("../../etc/passwd")
    assert safe_token("a/b") != safe_token("a:b")
