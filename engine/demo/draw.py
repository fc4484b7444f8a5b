"""Fast seeded draws for the generator.

``random.Random.randint`` and ``choices`` cost about a microsecond each in Python code;
the generator makes millions of draws, so these helpers build on the C-level
``random()`` alone. Same seed, same sequence: determinism is what matters, not the
exact distribution ``randint`` would give.
"""

from __future__ import annotations

import bisect
import itertools
import random
from collections.abc import Sequence
from typing import TypeVar

T = TypeVar("T")


class Draw:
    def __init__(self, seed: int) -> None:
        self._random = random.Random(seed)
        self.random = self._random.random
        self._tables: dict[tuple[tuple[object, ...], tuple[float, ...]], list[float]] = {}

    def between(self, low: int, high: int) -> int:
        """An integer in ``[low, high]``, both included."""
        return low + int(self.random() * (high - low + 1))

    def below(self, n: int) -> int:
        """An integer in ``[0, n)``."""
        return int(self.random() * n)

    def pick(self, items: Sequence[T]) -> T:
        return items[int(self.random() * len(items))]

    def weighted(self, values: tuple[T, ...], weights: tuple[float, ...]) -> T:
        key = (values, weights)
        cumulative = self._tables.get(key)  # type: ignore[arg-type]
        if cumulative is None:
            cumulative = self._tables[key] = list(itertools.accumulate(weights))  # type: ignore[index]
        index = bisect.bisect_right(cumulative, self.random() * cumulative[-1])
        return values[min(index, len(values) - 1)]

    def sample(self, items: Sequence[T], count: int) -> list[T]:
        """``count`` distinct items, in draw order (``count`` is small next to ``len(items)``)."""
        chosen: list[int] = []
        size = len(items)
        while len(chosen) < count:
            index = int(self.random() * size)
            if index not in chosen:
                chosen.append(index)
        return [items[index] for index in chosen]
