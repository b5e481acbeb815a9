"""The contact kernel of the refinement (paper eqs. 11-13, B15-B19), vectorized.

``d`` is the signed point-to-plane distance of a point to the object surface (metres, negative
inside). ``f`` is quadratic outside (pulling a fingertip onto the surface) and grows
exponentially inside (pushing it out), with ``f(0) = f'(0) = 0`` and ``f''(0) = alpha`` on both
sides, so Gauss-Newton sees one smooth convex function. Points that must stay out of the object
without being pulled onto it (links, fingertips away from contact) use the inside branch only,
which is still C1 at 0.

Both branches are evaluated without ``where``: with ``i = min(d, 0)`` and ``o = max(d, 0)``,
``alpha/2 o^2 + alpha/k^2 (exp(-k i) + k i - 1)`` is each branch on its side (the other term
vanishes), which keeps the per-frame solver free of masked copies.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

FloatArray = NDArray[np.float64]


def kernel_and_slope(d: ArrayLike, alpha: float, k: float,
                     pull: ArrayLike | float = 1.0) -> tuple[FloatArray, FloatArray]:
    """f(d) of eq. 12 and f'(d), the outside branch scaled by ``pull`` in [0, 1] (0: the point
    is only kept out of the object, 1: it is pulled onto the surface as in the paper)."""
    d = np.asarray(d, dtype=np.float64)
    inside = np.minimum(d, 0.0)
    outside = np.maximum(d, 0.0)
    e = np.exp(-k * inside)
    pulled = alpha * np.asarray(pull, dtype=np.float64) * outside
    f = 0.5 * pulled * outside + (alpha / (k * k)) * (e + k * inside - 1.0)
    slope = pulled + (alpha / k) * (1.0 - e)
    return f, slope


def kernel(d: ArrayLike, alpha: float, k: float) -> FloatArray:
    """f(d): alpha/2 d^2 outside, alpha/k^2 (exp(-k d) + k d - 1) inside."""
    return kernel_and_slope(d, alpha, k)[0]


def kernel_slope(d: ArrayLike, alpha: float, k: float) -> FloatArray:
    """f'(d): alpha d outside, alpha/k (1 - exp(-k d)) inside."""
    return kernel_and_slope(d, alpha, k)[1]


def residuals(f: FloatArray, slope: FloatArray, lambda_c: float,
              epsilon: float) -> tuple[FloatArray, FloatArray]:
    """r_i = sqrt(2 lambda_c f_i) (eq. 13) and dr_i/dd_i with the epsilon guard of eq. B19."""
    scale = np.sqrt(2.0 * lambda_c)
    root = np.sqrt(f)
    return scale * root, scale * slope / (2.0 * root + epsilon * epsilon)
