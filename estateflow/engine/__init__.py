"""The engine: workflow specs, calendar, state machine, storage, clocks and timers."""

from ._errors import *  # noqa: F403
from ._errors import __all__ as _errors_all

__all__ = [*_errors_all]
