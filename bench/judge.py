"""Spreads and targets: p10/p50/p90 of samples, and a target judged against the spread.

Every target of the bench is an upper bound ("no more than"), either a fixed limit or a
limit computed from a reference's samples through the reference's median (``limit =
factor x reference p50 + plus``).  Our figure is judged by its spread, not its median:

* **met** when our p90 is within the limit (p90 <= limit);
* **missed** when our p10 is beyond it (p10 > limit);
* **within noise** otherwise (the limit falls inside our p10..p90).

A figure without samples is given a stated tolerance instead: its spread is taken as
value - tolerance .. value + tolerance (``Spread.around``), and judged the same way.

Percentiles are ``statistics.quantiles(n=10)`` (the default, exclusive method), as the
tables have always printed them; one sample is its own p10, p50 and p90.

No side effects on import, standard library only: tests import it.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass

MET = "met"
MISSED = "missed"
WITHIN_NOISE = "within noise"


@dataclass(frozen=True)
class Spread:
    """The 10th, 50th and 90th percentiles of some samples."""

    p10: float
    p50: float
    p90: float

    @classmethod
    def of(cls, values: Sequence[float], scale: float = 1.0) -> Spread:
        """The spread of ``values``, each multiplied by ``scale`` (1000: seconds to ms)."""
        if not values:
            raise ValueError("no samples")
        data = sorted(value * scale for value in values)
        if len(data) == 1:
            return cls(data[0], data[0], data[0])
        deciles = statistics.quantiles(data, n=10)
        return cls(deciles[0], statistics.median(data), deciles[-1])

    @classmethod
    def around(cls, value: float, tolerance: float) -> Spread:
        """A single figure with a stated tolerance: value - tolerance .. value + tolerance."""
        return cls(value - tolerance, value, value + tolerance)

    def format(self, digits: int = 1, width: int = 0) -> str:
        """``p50 (p10..p90)``; the median right-aligned in ``width`` characters."""
        return f"{self.p50:{width}.{digits}f} ({self.p10:.{digits}f}..{self.p90:.{digits}f})"

    def __str__(self) -> str:
        return self.format()


def spread_text(
    values: Sequence[float], scale: float = 1000.0, digits: int = 1, width: int = 0
) -> str:
    """``median (p10..p90)`` of ``values`` (seconds, shown in ms by default); ``-`` if none."""
    if not values:
        return "-"
    return Spread.of(values, scale).format(digits, width)


def verdict(ours: Spread, limit: float) -> str:
    """``met``, ``missed`` or ``within noise``: ``ours`` against an upper ``limit``."""
    if ours.p90 <= limit:
        return MET
    if ours.p10 > limit:
        return MISSED
    return WITHIN_NOISE


def reference_limit(reference: Spread, *, factor: float = 1.0, plus: float = 0.0) -> float:
    """The limit a reference sets: ``factor`` x its median + ``plus``."""
    return factor * reference.p50 + plus


@dataclass(frozen=True)
class Judgement:
    """One target: our spread, the limit, and the verdict."""

    ours: Spread
    limit: float

    @property
    def verdict(self) -> str:
        """``met``, ``missed`` or ``within noise``."""
        return verdict(self.ours, self.limit)

    @property
    def cell(self) -> str:
        """The verdict as a markdown table cell (a miss in bold)."""
        return f"**{self.verdict}**" if self.verdict == MISSED else self.verdict

    def figures(self, digits: int = 1) -> str:
        """``ours p50 (p10..p90) vs limit L``."""
        return f"{self.ours.format(digits)} vs limit {self.limit:.{digits}f}"


def judge(
    ours: Sequence[float] | Spread,
    limit: float | Sequence[float] | Spread,
    *,
    factor: float = 1.0,
    plus: float = 0.0,
) -> Judgement:
    """Our samples (or spread) against a fixed limit, or against a reference's samples
    (or spread), whose limit is ``factor`` x its median + ``plus``."""
    our_spread = ours if isinstance(ours, Spread) else Spread.of(ours)
    if isinstance(limit, Spread):
        bound = reference_limit(limit, factor=factor, plus=plus)
    elif isinstance(limit, int | float):
        bound = factor * limit + plus
    else:
        bound = reference_limit(Spread.of(limit), factor=factor, plus=plus)
    return Judgement(our_spread, bound)
