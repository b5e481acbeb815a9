"""Time stamps, velocities and accelerations for joint paths, within limits and at rest at both
ends, so that a controller never sees a jump (see docs/execution.md).

:func:`retime` keeps the path's own points and nominal timing where the limits allow: the path
is a cubic spline over its nominal time ``u``; a time law ``u(tau)`` starts and ends at rest
with min-jerk speed ramps (zero velocity, acceleration and jerk of ``u`` at both ends, C3), and
the whole time axis is then stretched uniformly by the smallest factor that keeps every joint
within ``scale`` x its velocity, acceleration (and jerk) limits. Stretching time by ``k``
divides velocities by ``k``, accelerations by ``k^2`` and jerks by ``k^3``, so that factor is
exact, for the curve and for the quintic interpolation the controller runs between the points.

:func:`approach_segment` is the min-jerk move from the current joint state to a plan's first
point; :func:`plan_execution` puts both together and validates the result.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.polynomial import Polynomial
from numpy.typing import ArrayLike
from scipy.interpolate import make_interp_spline
from scipy.optimize import brentq

from unihm_core.execution.validation import (
    DEFAULT_INTERPOLATION_SAMPLES,
    FloatArray,
    Limits,
    TrajectoryValidationError,
    Violation,
    interpolated_motion,
    validate_joint_trajectory,
)
from unihm_core.trajectory import min_jerk

DEFAULT_SCALE = 0.5  # fraction of the published velocity/acceleration/jerk limits planned with
DEFAULT_RAMP_FRACTION = 0.15  # of the nominal duration, spent in each start/stop speed ramp
DEFAULT_MAX_STEP = 0.35  # rad between consecutive path points: more is a jump, not a motion
DEFAULT_APPROACH_DT = 0.02  # s between the points of an approach segment
MIN_DURATION = 0.1  # s, shortest motion produced (a controller needs time to follow)
_DENSE = 16  # curve samples per path segment where the peaks are measured
_CURVE_MARGIN = 1.01  # on the stretch from the sampled curve: peaks between the samples

# The min-jerk profile s(x) (same as unihm_core.trajectory.min_jerk) as a polynomial: its
# derivatives give the approach's velocity/acceleration and the ramps' speed profile, its
# integral the distance covered in a ramp.
_MJ = Polynomial([0.0, 0.0, 0.0, 10.0, -15.0, 6.0])
_MJ_D = [_MJ.deriv(m) for m in range(1, 4)]
_MJ_INT = _MJ.integ()  # integral from 0: 1/2 at x = 1


def _peak(poly: Polynomial) -> float:
    """max |poly| on [0, 1] (at an end or where its derivative vanishes)."""
    roots = poly.deriv().roots()
    x = np.concatenate([[0.0, 1.0], roots[(abs(roots.imag) < 1e-12)
                                            & (roots.real >= 0) & (roots.real <= 1)].real])
    return float(np.max(np.abs(poly(x))))


# peaks of s', s'', s''' of min-jerk: 15/8, 10/sqrt(3), 60 (per unit distance and duration)
_MJ_PEAKS = [_peak(d) for d in _MJ_D]


class TimingError(ValueError):
    """A path that cannot be timed safely (a jump, a point outside the limits, bad input)."""


@dataclass(frozen=True, eq=False)
class TimedTrajectory:
    """Points of a timed joint trajectory, arrays (N, dof) in the order of ``names``.

    ``slowdown`` is the factor real time was stretched by from the nominal time (with ramps);
    above 1 the limits, not the plan, set the pace. Without nominal times the nominal time is
    the point index, so it is then the time per point at nominal speed, in seconds.
    """

    names: tuple[str, ...]
    times: FloatArray
    positions: FloatArray
    velocities: FloatArray
    accelerations: FloatArray
    slowdown: float = 1.0

    def __len__(self) -> int:
        return int(self.times.size)

    @property
    def duration(self) -> float:
        return float(self.times[-1] - self.times[0])

    def select(self, names: Sequence[str]) -> TimedTrajectory:
        """The same points for some joints only (e.g. the arm's and the hand's share of a
        trajectory retimed together with ``Limits.concat``)."""
        idx = [self.names.index(n) for n in names]
        return TimedTrajectory(tuple(names), self.times.copy(), self.positions[:, idx],
                               self.velocities[:, idx], self.accelerations[:, idx],
                               self.slowdown)

    def validate(self, limits: Limits, current: ArrayLike | Mapping[str, float] | None = None,
                 **kwargs: object) -> list[Violation]:
        """:func:`~unihm_core.execution.validation.validate_joint_trajectory` of this."""
        return validate_joint_trajectory(self.names, self.times, self.positions,
                                         self.velocities, self.accelerations, limits, current,
                                         **kwargs)  # type: ignore[arg-type]


def _check_path(positions: ArrayLike, limits: Limits, what: str) -> FloatArray:
    q = np.asarray(positions, dtype=np.float64)
    if q.ndim != 2 or q.shape[1] != limits.dof:
        raise TimingError(f"{what}: expected shape (N, {limits.dof}) for the joints "
                          f"{', '.join(limits.names)}, got {q.shape}")
    bad = np.argwhere(~np.isfinite(q))
    if bad.size:
        i, j = bad[0]
        raise TimingError(f"{what}: {limits.names[j]} position {q[i, j]} at point {i}")
    tol = 1e-9 * np.maximum(1.0, np.abs(limits.lower))
    outside = np.argwhere((q < limits.lower - tol) | (q > limits.upper + tol))
    if outside.size:
        i, j = outside[0]
        raise TimingError(f"{what}: {limits.names[j]} position {q[i, j]:.4g} {limits.units[j]} "
                          f"at point {i} is outside the limits [{limits.lower[j]:.4g}, "
                          f"{limits.upper[j]:.4g}] {limits.units[j]}")
    return q


def _stretch(vel: FloatArray, acc: FloatArray, jerk: FloatArray, limits: Limits) -> float:
    """Smallest time stretch k that brings the sampled derivatives within the limits."""
    k = np.max(np.abs(vel), axis=0, initial=0.0) / limits.velocity
    k = np.maximum(k, np.sqrt(np.max(np.abs(acc), axis=0, initial=0.0) / limits.acceleration))
    if limits.jerk is not None:
        k = np.maximum(k, np.cbrt(np.max(np.abs(jerk), axis=0, initial=0.0) / limits.jerk))
    return float(np.max(k))


class _TimeLaw:
    """Nominal time u (0..D) as a function of tau (0..D + r): speed du/dtau rises from 0 to 1
    along the min-jerk profile during the first r, stays 1, and falls back to 0 during the last
    r; distance covered in each ramp is r/2."""

    def __init__(self, duration: float, ramp: float) -> None:
        self.d, self.r = duration, ramp
        self.total = duration + ramp

    def derivatives(self, tau: FloatArray) -> list[FloatArray]:
        """[u, u', u'', u'''] at tau."""
        d, r = self.d, self.r
        x_in = np.clip(tau / r, 0.0, 1.0)
        x_out = np.clip((self.total - tau) / r, 0.0, 1.0)
        start, end = tau < r, tau > self.total - r
        u = np.where(start, r * _MJ_INT(x_in),
                     np.where(end, d - r * _MJ_INT(x_out), tau - 0.5 * r))
        u1 = np.where(start, _MJ(x_in), np.where(end, _MJ(x_out), 1.0))
        u2 = np.where(start, _MJ_D[0](x_in) / r, np.where(end, -_MJ_D[0](x_out) / r, 0.0))
        u3 = np.where(start, _MJ_D[1](x_in) / r**2,
                      np.where(end, _MJ_D[1](x_out) / r**2, 0.0))
        return [u, u1, u2, u3]

    def inverse(self, u: FloatArray) -> FloatArray:
        """tau at which the law reaches each u (monotone: a root in the ramps)."""
        d, r = self.d, self.r
        tau = u + 0.5 * r
        for i in np.flatnonzero(u < 0.5 * r):
            tau[i] = 0.0 if u[i] <= 0 else r * brentq(lambda x, c=u[i] / r: _MJ_INT(x) - c,
                                                        0.0, 1.0, xtol=1e-14)
        for i in np.flatnonzero(u > d - 0.5 * r):
            rest = (d - u[i]) / r
            tau[i] = self.total if rest <= 0 else self.total - r * brentq(
                lambda x, c=rest: _MJ_INT(x) - c, 0.0, 1.0, xtol=1e-14)
        return tau


def _curve(spline: object, law: _TimeLaw, tau: FloatArray) -> list[FloatArray]:
    """Joint position and its first three derivatives in tau (chain rule through the law)."""
    u, u1, u2, u3 = law.derivatives(tau)
    p0, p1, p2, p3 = (spline(u, nu) for nu in range(4))  # type: ignore[operator]
    c1, c2, c3 = u1[:, None], u2[:, None], u3[:, None]
    return [p0, p1 * c1, p2 * c1**2 + p1 * c2, p3 * c1**3 + 3 * p2 * c1 * c2 + p1 * c3]


def _check_steps(q: FloatArray, limits: Limits, max_step: float | None) -> None:
    if max_step is None:
        return
    step = np.abs(np.diff(q, axis=0))
    bad = np.argwhere(step > max_step)
    if bad.size:
        i, j = bad[np.argmax(step[bad[:, 0], bad[:, 1]])]
        raise TimingError(
            f"path: {limits.names[j]} jumps {step[i, j]:.4g} {limits.units[j]} between points "
            f"{i} and {i + 1} ({bad.shape[0]} steps above max_step {max_step:g}): a "
            "discontinuous path must be planned again, not executed")


def _nominal(nominal_times: ArrayLike | None, n: int) -> FloatArray:
    """The path parameter: nominal time from 0, or the point index when there is none."""
    if nominal_times is None:
        return np.arange(n, dtype=np.float64)
    u = np.asarray(nominal_times, dtype=np.float64).reshape(-1)
    if u.shape != (n,) or not np.all(np.isfinite(u)) or np.any(np.diff(u) <= 0):
        raise TimingError(f"nominal_times: expected {n} finite, strictly increasing stamps")
    return u - u[0]


def _finish(base: TimedTrajectory, k: float, run: Limits, samples: int) -> TimedTrajectory:
    """Stretch the time of ``base`` by k and validate; a rounding miss at a limit stretches a
    little more."""
    for _ in range(8):
        out = TimedTrajectory(base.names, k * base.times, base.positions, base.velocities / k,
                              base.accelerations / k**2, slowdown=k)
        problems = out.validate(run, interpolation_samples=samples)
        if not problems:
            return out
        if any(p.kind.startswith("position") or p.kind in ("non_finite", "time", "shape")
               for p in problems):
            raise TimingError("retimed path fails validation:\n  "
                              + "\n  ".join(p.message for p in problems))
        k *= 1.02
    raise TrajectoryValidationError(problems, "retimed path")


def retime(positions: ArrayLike, limits: Limits, nominal_times: ArrayLike | None = None, *,
           scale: float = DEFAULT_SCALE, ramp_fraction: float = DEFAULT_RAMP_FRACTION,
           max_step: float | None = DEFAULT_MAX_STEP, sample_dt: float | None = None,
           interpolation_samples: int = DEFAULT_INTERPOLATION_SAMPLES) -> TimedTrajectory:
    """Time a joint path (N, dof) in the order of ``limits.names``.

    With ``nominal_times`` (N,), the generated motion's own stamps, the result follows them
    (never faster) and stretches time only where ``scale`` x the limits require it; without,
    the path is run as fast as the scaled limits allow. The result starts at t = 0 and at rest
    and ends at rest; its points are the path's own points, or, with ``sample_dt``, samples of
    the same curve every ``sample_dt`` seconds (at most). A step larger than ``max_step``
    between two consecutive points of a joint is a jump (an IK branch switch, a glitch) and
    raises :class:`TimingError`, as does a point outside the position limits.
    """
    run = limits.scaled(scale)
    q = _check_path(positions, limits, "path")
    n = q.shape[0]
    if n < 2:
        raise TimingError(f"path: at least 2 points needed, got {n} (use approach_segment)")
    if not 0 < ramp_fraction <= 1:
        raise ValueError(f"ramp_fraction must be in (0, 1], got {ramp_fraction}")
    if sample_dt is not None and not sample_dt > 0:
        raise ValueError(f"sample_dt must be positive, got {sample_dt}")
    _check_steps(q, limits, max_step)
    u = _nominal(nominal_times, n)
    degree = min(3, n - 1)
    spline = make_interp_spline(u, q, k=degree, bc_type="natural" if degree == 3 else None)
    law = _TimeLaw(float(u[-1]), ramp_fraction * float(u[-1]))

    # peaks of the curve, densely sampled with every knot included
    tau_knots = law.inverse(u)
    frac = np.arange(_DENSE) / _DENSE
    tau_dense = np.concatenate([(tau_knots[:-1, None] + np.diff(tau_knots)[:, None]
                                 * frac[None, :]).reshape(-1), tau_knots[-1:]])
    k = _stretch(*_curve(spline, law, tau_dense)[1:], run) * _CURVE_MARGIN
    slowest = 1.0 if nominal_times is not None else 0.0  # never faster than the plan
    k = max(k, slowest, MIN_DURATION / law.total)
    if sample_dt is None:
        tau = tau_knots
        _, vel, acc, _ = _curve(spline, law, tau)
        pos = q.copy()  # the path's own points, exactly
    else:
        tau = np.linspace(0.0, law.total, max(2, int(np.ceil(k * law.total / sample_dt)) + 1))
        pos, vel, acc, _ = _curve(spline, law, tau)
        pos[0], pos[-1] = q[0], q[-1]
    vel[[0, -1]] = 0.0  # the law's speed is 0 at both ends: this only removes rounding
    acc[[0, -1]] = 0.0
    # and the peaks of the quintics the controller will run between these points
    _, ivel, iacc, ijerk = interpolated_motion(tau, pos, vel, acc, interpolation_samples)[1]
    k = max(k, _stretch(ivel, iacc, ijerk, run))
    return _finish(TimedTrajectory(limits.names, tau, pos, vel, acc), k, run,
                   interpolation_samples)


def approach_segment(q_current: ArrayLike, q_start: ArrayLike, limits: Limits, *,
                     scale: float = DEFAULT_SCALE, dt: float = DEFAULT_APPROACH_DT,
                     min_duration: float = MIN_DURATION) -> TimedTrajectory:
    """Min-jerk move from the current joint state (at rest) to ``q_start`` (at rest), as
    short as ``scale`` x the limits allow (at least ``min_duration``), sampled every ``dt``.

    Min-jerk peaks are 15/8 d/T (velocity), 10/sqrt(3) d/T^2 (acceleration) and 60 d/T^3
    (jerk) for a distance d in time T, so the duration follows in closed form.
    """
    run = limits.scaled(scale)
    q0 = _check_path(np.reshape(q_current, (1, -1)), limits, "current joint state")[0]
    q1 = _check_path(np.reshape(q_start, (1, -1)), limits, "start point")[0]
    dist = np.abs(q1 - q0)
    duration = max(min_duration, float(np.max(dist * _MJ_PEAKS[0] / run.velocity)),
                   float(np.max(np.sqrt(dist * _MJ_PEAKS[1] / run.acceleration))))
    if run.jerk is not None:
        duration = max(duration, float(np.max(np.cbrt(dist * _MJ_PEAKS[2] / run.jerk))))
    count = max(2, int(np.ceil(duration / dt)) + 1)
    x = np.linspace(0.0, 1.0, count)[:, None]
    delta = (q1 - q0)[None, :]
    pos = q0 + delta * min_jerk(x)
    pos[-1] = q1
    vel = delta * _MJ_D[0](x) / duration
    acc = delta * _MJ_D[1](x) / duration**2
    return TimedTrajectory(limits.names, x[:, 0] * duration, pos, vel, acc)


def concatenate(*parts: TimedTrajectory, atol: float = 1e-9) -> TimedTrajectory:
    """Parts run one after the other; each must end at rest where the next starts at rest, so
    the joins are as smooth as the parts (C2)."""
    if not parts:
        raise ValueError("concatenate: no parts")
    first = parts[0]
    times, pos, vel, acc = [first.times], [first.positions], [first.velocities], \
        [first.accelerations]
    offset = float(first.times[-1])
    for prev, part in itertools.pairwise(parts):
        if part.names != first.names:
            raise ValueError(f"concatenate: joints {part.names} differ from {first.names}")
        rest = (np.all(np.abs(prev.velocities[-1]) <= atol)
                and np.all(np.abs(prev.accelerations[-1]) <= atol)
                and np.all(np.abs(part.velocities[0]) <= atol)
                and np.all(np.abs(part.accelerations[0]) <= atol))
        gap = float(np.max(np.abs(prev.positions[-1] - part.positions[0])))
        if not rest or gap > atol:
            raise ValueError(f"concatenate: parts do not join at rest (position gap {gap:.3g})")
        times.append(part.times[1:] - part.times[0] + offset)
        pos.append(part.positions[1:])
        vel.append(part.velocities[1:])
        acc.append(part.accelerations[1:])
        offset = float(times[-1][-1]) if part.times.size > 1 else offset
    return TimedTrajectory(first.names, np.concatenate(times), np.concatenate(pos),
                           np.concatenate(vel), np.concatenate(acc),
                           max(p.slowdown for p in parts))


def plan_execution(current: ArrayLike, positions: ArrayLike, limits: Limits,
                   nominal_times: ArrayLike | None = None, *, scale: float = DEFAULT_SCALE,
                   start_tolerance: float = 1e-4, **retime_options: object) -> TimedTrajectory:
    """The trajectory to send: an approach from ``current`` (when it is more than
    ``start_tolerance`` from the path's first point) followed by the retimed path, validated
    against ``scale`` x the limits (raises :class:`TrajectoryValidationError` if it fails)."""
    plan = retime(positions, limits, nominal_times, scale=scale,
                  **retime_options)  # type: ignore[arg-type]
    q_now = np.asarray(current, dtype=np.float64).reshape(-1)
    if float(np.max(np.abs(q_now - plan.positions[0]), initial=0.0)) > start_tolerance:
        plan = concatenate(approach_segment(q_now, plan.positions[0], limits, scale=scale), plan)
    problems = plan.validate(limits.scaled(scale), q_now)
    if problems:
        raise TrajectoryValidationError(problems, "planned motion")
    return plan
