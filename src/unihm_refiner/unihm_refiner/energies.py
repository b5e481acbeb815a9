"""The contact kernel of the refinement (paper eqs. 11-13, B15-B19), vectorized.

``d`` is the signed point-to-plane distance of a point to the object surface (metres, negative
inside). ``f`` is quadratic outside (pulling a fingertip onto the surface) and grows
exponentially inside (pushing it out), with ``f(0) = f'(0) = 0`` and ``f''(0) = alpha`` on both
sides, so Gauss-Newton sees one smooth convex function.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

FloatArray = NDArray[np.float64]


def kernel(d: ArrayLike, alpha: float, k: float) -> FloatArray:
    """f(d) of eq. 12: alpha/2 d^2 outside, alpha/k^2 (exp(-k d) + k d - 1) inside."""
    d = np.asarray(d, dtype=np.float64)
    inside = np.minimum(d, 0.0)  # exp only of the inside part: no overflow far outside
    return np.where(d >= 0.0, 0.5 * alpha * d * d,
                    alpha / (k * k) * (np.exp(-k * inside) + k * inside - 1.0))


def kernel_slope(d: ArrayLike, alpha: float, k: float) -> FloatArray:
    """f'(d): alpha d outside, alpha/k (1 - exp(-k d)) inside."""
    d = np.asarray(d, dtype=np.float64)
    inside = np.minimum(d, 0.0)
    return np.where(d >= 0.0, alpha * d, alpha / k * (1.0 - np.exp(-k * inside)))


def penetration_kernel(d: ArrayLike, alpha: float, k: float) -> tuple[FloatArray, FloatArray]:
    """The inside branch only (zero outside): for points that may not enter the object but
    need not touch it (links, or fingertips away from contact). Still C1 at 0."""
    d = np.minimum(np.asarray(d, dtype=np.float64), 0.0)
    return kernel(d, alpha, k), kernel_slope(d, alpha, k)


def residuals(f: FloatArray, slope: FloatArray, lambda_c: float,
              epsilon: float) -> tuple[FloatArray, FloatArray]:
    """r_i = sqrt(2 lambda_c f_i) (eq. 13) and dr_i/dd_i with the epsilon guard of eq. B19."""
    scale = np.sqrt(2.0 * lambda_c)
    root = np.sqrt(f)
    return scale * root, scale * slope / (2.0 * root + epsilon * epsilon)
