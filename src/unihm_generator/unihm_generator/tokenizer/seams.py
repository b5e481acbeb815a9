"""Continuity across token boundaries.

Each token is decoded on its own into ``chunk`` frames, so consecutive chunks need not meet:
where the data moves fast (a hand closing or opening at 0.2 rad per frame) a decoder tends to
return the chunk's mean pose, and the trajectory becomes a staircase with jumps of up to
1.5 rad at the seams (docs/tokenizer.md, "Seams"). A robot must not be asked to follow that.

The fix is a Whittaker smoother over the decoded frames: the trajectory ``x`` closest to the
decoded ``r`` with a penalty on its second differences,

    minimise  |x - r|^2 + lam |D2 x|^2   =>   (I + lam D2^T D2) x = r,

a symmetric positive-definite pentadiagonal system solved per trajectory in O(T). It spreads a
seam's jump over the neighbouring frames and leaves slow motion almost untouched; on the test
split it brings the decoded joints closer to the data, not further (the staircase was the error).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray
from scipy.linalg import solveh_banded


def _banded_system(frames: int, strength: float) -> NDArray[np.float64]:
    """Upper banded form of I + lam D2^T D2 for ``solveh_banded`` (3 rows, ``frames`` columns)."""
    # every row (1, -2, 1) of D2 adds its outer product to a 3x3 block on the diagonal
    rows = np.ones(frames - 2)
    main = np.convolve(rows, [1.0, 4.0, 1.0])
    first = np.convolve(rows, [-2.0, -2.0])
    ab = np.zeros((3, frames))
    ab[2] = 1.0 + strength * main
    ab[1, 1:] = strength * first
    ab[0, 2:] = strength * rows
    return ab


def smooth_seams(joints: NDArray[np.floating], strength: float) -> NDArray[np.float32]:
    """Whittaker-smooth joints of shape (..., T, dof) along T; ``strength`` is lam (0: as is).

    Trajectories shorter than three frames have no second difference and are returned as they
    are. Limits are the caller's business (the smoother may overshoot a bound by a little).
    """
    q = np.asarray(joints)
    if strength < 0 or not np.isfinite(strength):
        raise ValueError(f"seam smoothing strength must be a finite value >= 0, got {strength}")
    frames = q.shape[-2]
    if strength == 0 or frames < 3:
        return q.astype(np.float32, copy=True)
    rhs = np.moveaxis(q.astype(np.float64), -2, 0).reshape(frames, -1)
    x = solveh_banded(_banded_system(frames, strength), rhs, check_finite=False)
    x = x.reshape((frames, *q.shape[:-2], *q.shape[-1:]))
    return np.moveaxis(x, 0, -2).astype(np.float32)
