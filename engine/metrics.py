"""Prometheus metrics: what the dispatcher counts and what ``GET /metrics`` shows.

The counters and histograms live in one registry of our own (:data:`REGISTRY`), not in
prometheus-client's global default, so importing the engine twice (tests, workers) never
registers a name twice and nothing but Tidings' figures appear on the endpoint.
The dispatcher calls the ``record_*`` functions; the outbox depth by state is not
counted but read from the database at scrape time (:class:`OutboxDepthCollector`),
so it is right even when several workers share one outbox.

Names:

* ``tidings_sends_total{campaign,channel,outcome}`` — outcome ``sent`` | ``failed`` |
  ``retry`` | ``skipped``; campaigns are few, so the label stays bounded;
* ``tidings_retries_total{channel}`` — transient failures scheduled for another attempt;
* ``tidings_send_seconds{channel}`` and ``tidings_render_seconds`` — latency histograms;
* ``tidings_outbox_rows{state}`` — outbox rows by state, at scrape time.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator
from typing import NamedTuple

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

from engine.store import read_only
from engine.store.models import Delivery, DeliveryState

REGISTRY = CollectorRegistry(auto_describe=True)

SENDS = Counter(
    "tidings_sends",
    "Messages handled by the dispatcher, by campaign, channel and outcome.",
    ["campaign", "channel", "outcome"],
    registry=REGISTRY,
)
RETRIES = Counter("tidings_retries", "Sends scheduled for another attempt.", ["channel"], registry=REGISTRY)
SEND_SECONDS = Histogram(
    "tidings_send_seconds",
    "Time a channel took to accept one message.",
    ["channel"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
    registry=REGISTRY,
)
RENDER_SECONDS = Histogram(
    "tidings_render_seconds",
    "Time to render one message for one recipient.",
    buckets=(0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05, 0.25, 1),
    registry=REGISTRY,
)


def record_send(campaign: str, channel: str, outcome: str, seconds: float | None = None) -> None:
    """Count one dispatched message; ``seconds`` (the channel call's duration) feeds the latency histogram."""
    SENDS.labels(campaign=campaign, channel=channel, outcome=outcome).inc()
    if seconds is not None and seconds >= 0:
        SEND_SECONDS.labels(channel=channel).observe(seconds)


def record_render(seconds: float) -> None:
    if seconds >= 0:
        RENDER_SECONDS.observe(seconds)


def record_retry(channel: str) -> None:
    RETRIES.labels(channel=channel).inc()


class OutboxDepthCollector(Collector):
    """``tidings_outbox_rows{state}``, one grouped COUNT per scrape; absent when the database is down."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "tidings_outbox_rows", "Outbox rows by state, read at scrape time.", labels=["state"]
        )
        table = Delivery.__table__  # type: ignore[attr-defined]
        try:
            with read_only(self._engine) as conn:  # a scrape never waits for a writer's lock
                counts: dict[str, int] = dict(
                    conn.execute(select(table.c.state, func.count()).group_by(table.c.state)).all()
                )
        except SQLAlchemyError:
            return
        for state in DeliveryState:
            family.add_metric([state.value], float(counts.get(state.value, 0)))
        yield family

    def describe(self) -> Iterator[GaugeMetricFamily]:
        return iter(())


class Needs(NamedTuple):
    """What needs an operator, as the gauges show it: suspended channels, breaker-paused campaigns."""

    channels: Collection[str]
    breaker_paused: Collection[str]


class AttentionCollector(Collector):
    """``tidings_channel_suspended{channel}`` and ``tidings_campaign_breaker_paused{campaign}`` (1 each).

    ``look`` reads them at scrape time (the public app passes :mod:`engine.runtime.attention`'s
    query: the runtime's knowledge comes in from above, this module stays below the runtime)."""

    def __init__(self, look: Callable[[], Needs]) -> None:
        self._look = look

    def collect(self) -> Iterator[GaugeMetricFamily]:
        try:
            needs = self._look()
        except SQLAlchemyError:
            return
        channels = GaugeMetricFamily(
            "tidings_channel_suspended",
            "A channel that sends nothing until resumed or its cap resets.",
            labels=["channel"],
        )
        for channel in ("email", "x"):
            channels.add_metric([channel], 1.0 if channel in needs.channels else 0.0)
        yield channels
        paused = GaugeMetricFamily(
            "tidings_campaign_breaker_paused", "A campaign the circuit breaker paused.", labels=["campaign"]
        )
        for campaign in sorted(needs.breaker_paused):
            paused.add_metric([campaign], 1.0)
        yield paused

    def describe(self) -> Iterator[GaugeMetricFamily]:
        return iter(())


def scrape(engine: Engine | None = None, needs: Callable[[], Needs] | None = None) -> bytes:
    """The Prometheus text exposition: the process's counters plus, with an engine, the outbox depth,
    and with ``needs``, what needs an operator."""
    text = generate_latest(REGISTRY)
    if engine is not None:
        scoped = CollectorRegistry(auto_describe=False)
        scoped.register(OutboxDepthCollector(engine))
        if needs is not None:
            scoped.register(AttentionCollector(needs))
        text += generate_latest(scoped)
    return text
