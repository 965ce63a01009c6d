"""Money bands with explicit bounds.

Why a construct of its own: the source procedures say 以内/以下/以上, which in Chinese all
include the figure, so "up to 1,000 by the CS manager" and "1,000 and above by the deputy GM"
overlap at exactly 1,000. A band here is written in interval notation, ``"[0, 1000]"`` or
``"(1000, 10000]"`` or ``"(10000, inf)"``, so every bound says whether it is included, and a
table of bands is checked to cover [0, ∞) exactly once.
"""

from __future__ import annotations

import re
from functools import lru_cache
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

__all__ = ["Band", "band_for", "check_bands", "parse_range"]

_RANGE = re.compile(r"^\s*([\[(])\s*([0-9][0-9_,]*(?:\.[0-9]+)?)\s*,\s*([0-9][0-9_,]*(?:\.[0-9]+)?|inf|∞)\s*([\])])\s*$")


@dataclass(frozen=True)
class Band:
    """One band: ``lower``..``upper`` (``upper`` None means no upper bound)."""

    name: str
    lower: Decimal
    lower_inclusive: bool
    upper: Decimal | None
    upper_inclusive: bool

    def contains(self, amount: Decimal) -> bool:
        above = amount >= self.lower if self.lower_inclusive else amount > self.lower
        if not above:
            return False
        if self.upper is None:
            return True
        return amount <= self.upper if self.upper_inclusive else amount < self.upper

    def __str__(self) -> str:
        upper = "inf" if self.upper is None else f"{self.upper}"
        return f"{'[' if self.lower_inclusive else '('}{self.lower}, {upper}{']' if self.upper_inclusive else ')'}"


@lru_cache(maxsize=1024)
def parse_range(name: str, text: str) -> Band:
    """Parse interval notation; raises ValueError with a message fit for a person."""
    match = _RANGE.match(str(text))
    if not match:
        raise ValueError(
            f"band {name!r}: range {text!r} is not interval notation; write e.g. '[0, 1000]', "
            "'(1000, 10000]' or '(10000, inf)' — '[' and ']' include the bound, '(' and ')' exclude it"
        )
    left, low, high, right = match.groups()
    try:
        lower = Decimal(low.replace(",", "").replace("_", ""))
        upper = None if high in ("inf", "∞") else Decimal(high.replace(",", "").replace("_", ""))
    except InvalidOperation as exc:  # pragma: no cover - the regex admits only numbers
        raise ValueError(f"band {name!r}: bad number in {text!r}") from exc
    if upper is None and right == "]":
        raise ValueError(f"band {name!r}: infinity cannot be included; write '{left}{low}, inf)'")
    if upper is not None and (upper < lower or (upper == lower and not (left == "[" and right == "]"))):
        raise ValueError(f"band {name!r}: range {text!r} is empty")
    return Band(name, lower, left == "[", upper, right == "]")


def check_bands(bands: Sequence[Band]) -> list[str]:
    """Every gap or overlap over [0, ∞), as messages; empty when the table is sound."""
    problems: list[str] = []
    ordered = sorted(bands, key=lambda b: (b.lower, not b.lower_inclusive))
    if not ordered:
        return ["no bands defined"]
    first = ordered[0]
    if first.lower > 0 or (first.lower == 0 and not first.lower_inclusive):
        problems.append(f"gap: amounts from 0 up to {first.lower} fall in no band "
                        f"(first band {first.name!r} starts at {'[' if first.lower_inclusive else '('}{first.lower})")
    for prev, nxt in zip(ordered, ordered[1:]):
        if prev.upper is None:
            problems.append(f"overlap: {prev.name!r} {prev} has no upper bound but {nxt.name!r} {nxt} follows")
            continue
        if nxt.lower < prev.upper or (nxt.lower == prev.upper and prev.upper_inclusive and nxt.lower_inclusive):
            problems.append(f"overlap: {prev.name!r} {prev} and {nxt.name!r} {nxt} both contain {nxt.lower}")
        elif nxt.lower > prev.upper or (not prev.upper_inclusive and not nxt.lower_inclusive):
            problems.append(f"gap: between {prev.name!r} {prev} and {nxt.name!r} {nxt} "
                            f"(amounts at or around {prev.upper} fall in no band)")
    if ordered[-1].upper is not None:
        problems.append(f"gap: amounts above {ordered[-1].upper} fall in no band "
                        f"(last band {ordered[-1].name!r} is {ordered[-1]}); end with 'inf)'")
    return problems


def band_for(bands: Sequence[Band], amount: Decimal | int | float | str | None) -> str | None:
    """Name of the band containing ``amount`` (None for a missing amount)."""
    if amount is None:
        return None
    value = amount if isinstance(amount, Decimal) else Decimal(str(amount))
    for band in bands:
        if band.contains(value):
            return band.name
    return None
