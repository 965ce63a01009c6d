"""Case numbers given from outside (an old register, an embedding app) and the sequence counters.

Why: a generated number is ``pattern.format(seq=next counter)``, the counter keyed by the
pattern rendered without ``{seq}`` (see :meth:`Steps.make_number`). A number brought in from
elsewhere that fits the pattern — ``TS-2025-000153`` — would later be generated again and clash
on the unique column, unless the counter of its key is moved past it. A number that does not
fit the pattern (an old ``2024-0153``) can never be generated, so it needs nothing.
"""

from __future__ import annotations

import re
import string
from functools import lru_cache

__all__ = ["number_key"]

_PARTS = {"year": r"\d{4}", "month": r"\d{2}", "seq": r"\d+"}


@lru_cache(maxsize=64)
def _pattern_regex(pattern: str) -> re.Pattern[str]:
    parts = []
    seen: set[str] = set()
    for literal, name, _spec, _conv in string.Formatter().parse(pattern):
        parts.append(re.escape(literal))
        if name is None:
            continue
        if name in seen:  # the same field twice must match the same text
            parts.append(f"(?P={name})")
            continue
        seen.add(name)
        parts.append(f"(?P<{name}>{_PARTS.get(name, '.+?')})")
    return re.compile("".join(parts))


def number_key(pattern: str, number: str) -> tuple[str, int] | None:
    """The counter key and sequence value ``number`` occupies under ``pattern``, or None
    when the number does not fit the pattern (it can then never be generated)."""
    from ._steps import _render_without_seq

    match = _pattern_regex(pattern).fullmatch(number)
    if match is None or "seq" not in match.groupdict():
        return None
    values: dict[str, object] = dict(match.groupdict())
    seq = int(str(values.pop("seq")))
    if "year" in values:
        values["year"] = int(str(values["year"]))
    return _render_without_seq(pattern, values), seq
