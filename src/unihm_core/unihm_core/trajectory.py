"""Time parametrization shared by planners, data synthesis and tests."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray


def min_jerk(u: ArrayLike) -> NDArray[np.float64]:
    """The minimum-jerk profile s(u) = 10u^3 - 15u^4 + 6u^5 on u in [0, 1] (clipped outside):
    zero velocity and acceleration at both ends, which is what makes planned motions start and
    stop without a jolt."""
    u = np.clip(np.asarray(u, dtype=np.float64), 0.0, 1.0)
    return u * u * u * (10.0 + u * (-15.0 + 6.0 * u))
