"""numba's ``njit`` where numba is installed, else a decorator that leaves functions as they are.

The compiled loops (the refiner's, the generator's greedy loop) each have a plain path; their
modules import ``njit`` and ``AVAILABLE`` from here so that they still import without numba,
and check ``AVAILABLE`` to choose the path.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

try:
    from numba import njit

    AVAILABLE = True
except ImportError:  # the plain paths are used instead
    AVAILABLE = False

    def njit(*_args: Any, **_kwargs: Any) -> Callable[[Any], Any]:  # type: ignore[no-redef]
        def wrap(func: Any) -> Any:
            return func
        return wrap

__all__ = ["AVAILABLE", "njit"]
