"""estateflow: workflow engine for property complaint, repair, move-in and renovation cases."""

from .engine import *  # noqa: F403
from .engine import __all__ as _engine_all

__version__ = "0.1.0"
__all__ = [*_engine_all, "__version__"]
