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


def hold_ends(poses: ArrayLike, before: int, after: int) -> NDArray[np.float64]:
    """``poses`` (T, ...) with the first one repeated ``before`` times ahead of them and the
    last one ``after`` times behind: an object at rest while a hand reaches for it and after
    it lets go. Dataset sequences put these rest phases around every planned motion, so a
    target given to the generator at run time needs them too."""
    p = np.asarray(poses, dtype=np.float64)
    if p.shape[0] < 1:
        raise ValueError("hold_ends needs at least one pose")
    if before < 0 or after < 0:
        raise ValueError(f"rest frames must be >= 0, got before={before}, after={after}")
    return np.concatenate([np.repeat(p[:1], before, axis=0), p,
                           np.repeat(p[-1:], after, axis=0)])
