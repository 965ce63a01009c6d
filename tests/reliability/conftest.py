"""Sizes, seeds and figures for the reliability suite.

Tests with a size are parametrized over ``SIZES``: the ``ci`` size runs in every test run and
fits its time budget; the ``full`` size of issue 13 (200 crash trials, 100,000 racing timers,
...) carries the ``full`` marker and runs only with ``ESTATEFLOW_FULL=1``::

    ESTATEFLOW_FULL=1 python3 -m pytest -p no:cacheprovider -m full tests/reliability

Every random choice comes from a ``random.Random`` seeded per test; the seed is printed in the
figures summary at the end of the run and in every failure message. ``ESTATEFLOW_SEED=N``
replays a run's choices (kill timing still depends on the machine, which is the point).
"""

from __future__ import annotations

import os
import random
from typing import Any

import pytest

FULL = os.environ.get("ESTATEFLOW_FULL") == "1"
FIGURES: list[tuple[str, dict[str, Any]]] = []


SIZES = [
    pytest.param("ci", id="ci"),
    pytest.param("full", id="full", marks=[
        pytest.mark.full, pytest.mark.skipif(not FULL, reason="full size: set ESTATEFLOW_FULL=1"),
        pytest.mark.timeout(3600)]),
]


def sized(size: str, ci: int, full: int) -> int:
    return full if size == "full" else ci


@pytest.fixture
def rng(request) -> random.Random:
    given = os.environ.get("ESTATEFLOW_SEED")
    seed = int(given) if given else random.SystemRandom().randrange(2**32)
    generator = random.Random(seed)
    generator.seed_value = seed  # type: ignore[attr-defined]
    request.node.user_properties.append(("seed", seed))
    return generator


@pytest.fixture
def figures(request):
    """``figures(name, **values)`` records a line for the summary printed after the run."""
    def record(**values: Any) -> None:
        FIGURES.append((request.node.nodeid.split("::")[-1], values))
    return record


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:  # noqa: ARG001
    if not FIGURES:
        return
    terminalreporter.section(f"reliability figures ({'full' if FULL else 'CI'} size)")
    for name, values in FIGURES:
        text = ", ".join(f"{k}={v}" for k, v in values.items())
        terminalreporter.write_line(f"{name}: {text}")
