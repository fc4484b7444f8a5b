"""The statistics behind A/B verdicts and holdout lifts: one-sided tests and ratio intervals.

* :func:`two_proportion` — the pooled two-proportion z-test (clicks or conversions per message
  sent): ``z = (p1 - p2) / sqrt(p(1 - p)(1/n1 + 1/n2))`` with ``p`` pooled; one-sided, ``p = 1 - Φ(z)``.
* :func:`welch` — Welch's t-test (revenue per recipient: unequal variances, heavy tails), with
  Welch–Satterthwaite degrees of freedom; one-sided, ``p = 1 - T_df(t)``. The t distribution's
  tail is scipy's (``scipy.stats.t.sf``): the standard library has the normal distribution only,
  and a hand-written incomplete beta function is exactly the code a library should own. scipy is
  imported when a revenue test is decided, not when the engine starts.
* :func:`ratio_interval` — a relative lift ``r - 1`` with a confidence interval computed on the log
  of the ratio (the delta method: ``Var(log m) ≈ Var(m) / m²``), then exponentiated, so the interval
  is never below -100 % and is asymmetric as a ratio's is. For proportions ``Var(log p̂) = (1 - p)/x``
  (Katz's interval for a risk ratio). A group with no conversions has no ratio to show: the
  Haldane–Anscombe correction (adding 0.5) would print a number, but with a small holdout that
  number is the correction's, not the data's (a 50-contact holdout with no order read as -60 %).

Each returns plain floats; deciding what they mean (95 %, the tie rule) is the caller's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist

_NORMAL = NormalDist()


@dataclass(frozen=True, slots=True)
class Moments:
    """A group's size, sum and sum of squares of a per-recipient value (revenue, or 0/1)."""

    n: int
    total: float
    squares: float

    @property
    def mean(self) -> float:
        return self.total / self.n if self.n else 0.0

    @property
    def variance(self) -> float:
        """The sample variance (n - 1 in the denominator); 0 for fewer than two values."""
        if self.n < 2:
            return 0.0
        return max((self.squares - self.total * self.total / self.n) / (self.n - 1), 0.0)


def two_proportion(x1: int, n1: int, x2: int, n2: int) -> float | None:
    """One-sided p-value that group 1's proportion beats group 2's; None when a group is empty."""
    if n1 <= 0 or n2 <= 0:
        return None
    p1, p2 = x1 / n1, x2 / n2
    pooled = (x1 + x2) / (n1 + n2)
    spread = math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    if spread == 0:
        return 0.5 if p1 == p2 else (0.0 if p1 > p2 else 1.0)
    return 1.0 - _NORMAL.cdf((p1 - p2) / spread)


def welch(first: Moments, second: Moments) -> float | None:
    """One-sided p-value that group 1's mean beats group 2's (Welch); None below two values a group."""
    if first.n < 2 or second.n < 2:
        return None
    a, b = first.variance / first.n, second.variance / second.n
    difference = first.mean - second.mean
    if a + b == 0:
        return 0.5 if difference == 0 else (0.0 if difference > 0 else 1.0)
    t = difference / math.sqrt(a + b)
    df = (a + b) ** 2 / ((a * a) / (first.n - 1) + (b * b) / (second.n - 1))
    from scipy.stats import t as student  # noqa: PLC0415 — only a revenue test needs it

    return float(student.sf(t, df))


@dataclass(frozen=True, slots=True)
class RatioInterval:
    """``ratio - 1`` (the relative lift) and its interval, at ``confidence``."""

    lift: float
    low: float
    high: float
    confidence: float


def _z(confidence: float) -> float:
    return _NORMAL.inv_cdf(0.5 + confidence / 2)


def proportion_ratio(x1: int, n1: int, x2: int, n2: int, confidence: float = 0.95) -> RatioInterval | None:
    """Group 1's proportion over group 2's, as a lift with Katz's log interval; None when a group is
    empty or has no successes (the ratio is then zero or infinite, and no interval says anything)."""
    if n1 <= 0 or n2 <= 0:
        return None
    if x1 <= 0 or x2 <= 0:
        return None
    p1, p2 = x1 / n1, x2 / n2
    spread = math.sqrt((1 - p1) / x1 + (1 - p2) / x2)
    return _interval(math.log(p1 / p2), spread, confidence)


def mean_ratio(first: Moments, second: Moments, confidence: float = 0.95) -> RatioInterval | None:
    """Group 1's mean over group 2's (delta method on the log); None when either mean is not positive."""
    if first.n < 2 or second.n < 2 or first.mean <= 0 or second.mean <= 0:
        return None
    spread = math.sqrt(
        first.variance / (first.n * first.mean**2) + second.variance / (second.n * second.mean**2)
    )
    return _interval(math.log(first.mean / second.mean), spread, confidence)


def _interval(log_ratio: float, spread: float, confidence: float) -> RatioInterval:
    z = _z(confidence)
    return RatioInterval(
        lift=math.exp(log_ratio) - 1,
        low=math.exp(log_ratio - z * spread) - 1,
        high=math.exp(log_ratio + z * spread) - 1,
        confidence=confidence,
    )


__all__ = ["Moments", "RatioInterval", "mean_ratio", "proportion_ratio", "two_proportion", "welch"]
