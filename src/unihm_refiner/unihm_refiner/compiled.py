"""The refinement loop compiled with numba: the same energies and the same Levenberg-Marquardt
steps as the numpy path of :class:`unihm_refiner.solver.Refiner`, one call per trajectory.

The numpy path spends nearly all of its time in Python call overhead on arrays of a dozen rows
(a pinocchio call per keypoint, a KD-tree query per evaluation, a dozen small numpy operations),
~4 evaluations a frame. Here a whole trajectory runs in one compiled function:

- forward kinematics and point Jacobians of the checked keypoints, on the tree pinocchio parsed
  (:class:`unihm_core.hands.kinematics.HandKinematics`; the batched numpy path runs the same
  recursion), wrist columns as body-frame twists;
- nearest surface samples from a k-d tree over the cloud, built as arrays in well under a
  millisecond per refinement and searched by branch and bound: the cloud's exact ``k`` nearest
  samples, as scipy's KD-tree returns them, without a Python call per query;
- the kernel, residuals and Jacobian rows of eqs. B15-B19, the priors with the SE(3) logarithm,
  the damped normal equations solved by Cholesky (the matrix is symmetric positive definite:
  ``J^T J + W + lambda I`` with ``W_gen`` positive), the step projected into the limits, the
  same acceptance, damping and stopping rules.

Round-off differs from the numpy path (summation order, Cholesky instead of LU), so results
agree to ~1e-9, not bit for bit; the tests hold the two paths together.
"""

# Compiled kernels take their arrays positionally (numba has no keyword-only arguments of
# arrays in tuples) and keep each loop in one function, which is what makes them fast.
# ruff: noqa: PLR0912, PLR0915, PLR0917

from __future__ import annotations

import math

import numpy as np

from unihm_core.numba_support import AVAILABLE, njit  # noqa: F401 - AVAILABLE: solver, tests

# indices into the float parameter vector given to refine_trajectory
P_ALPHA, P_K, P_LAMBDA_C, P_EPSILON, P_INV_H2 = 0, 1, 2, 3, 4
P_TOLERANCE, P_LAMBDA_INIT, P_LAMBDA_UP, P_LAMBDA_DOWN, P_LAMBDA_MAX = 5, 6, 7, 8, 9
# and into the integer one
I_NEIGHBOURS, I_MAX_ITERATIONS, I_FINGERS_ONLY, I_JOINT_LIMITS, I_WARM_START = 0, 1, 2, 3, 4

_SMALL = 1e-2  # rotation angle below which exp/log use their Taylor series


# ------------------------------------------------------------------------------------ SE(3)
@njit(cache=True)
def _skew_sq_apply(w0, w1, w2, v0, v1, v2):
    """w x (w x v)."""
    c0 = w1 * v2 - w2 * v1
    c1 = w2 * v0 - w0 * v2
    c2 = w0 * v1 - w1 * v0
    return (w1 * c2 - w2 * c1, w2 * c0 - w0 * c2, w0 * c1 - w1 * c0)


@njit(cache=True)
def _exp6(xi, out):
    """out (4, 4) = exp of the twist xi = (v, w): pinocchio's ``exp6`` (body-frame twist)."""
    w0, w1, w2 = xi[3], xi[4], xi[5]
    t2 = w0 * w0 + w1 * w1 + w2 * w2
    th = math.sqrt(t2)
    if th < _SMALL:
        a = 1.0 - t2 / 6.0 + t2 * t2 / 120.0
        b = 0.5 - t2 / 24.0 + t2 * t2 / 720.0
        c = 1.0 / 6.0 - t2 / 120.0 + t2 * t2 / 5040.0
    else:
        s = math.sin(th)
        h = math.sin(0.5 * th)
        a = s / th
        b = 2.0 * h * h / t2
        c = (th - s) / (t2 * th)
    # R = I + a W + b W^2 with W^2 = w w^T - t2 I
    out[0, 0] = 1.0 + b * (w0 * w0 - t2)
    out[1, 1] = 1.0 + b * (w1 * w1 - t2)
    out[2, 2] = 1.0 + b * (w2 * w2 - t2)
    out[0, 1] = -a * w2 + b * w0 * w1
    out[1, 0] = a * w2 + b * w0 * w1
    out[0, 2] = a * w1 + b * w0 * w2
    out[2, 0] = -a * w1 + b * w0 * w2
    out[1, 2] = -a * w0 + b * w1 * w2
    out[2, 1] = a * w0 + b * w1 * w2
    # t = V v, V = I + b W + c W^2
    v0, v1, v2 = xi[0], xi[1], xi[2]
    x0 = w1 * v2 - w2 * v1
    x1 = w2 * v0 - w0 * v2
    x2 = w0 * v1 - w1 * v0
    y0, y1, y2 = _skew_sq_apply(w0, w1, w2, xi[0], xi[1], xi[2])
    out[0, 3] = v0 + b * x0 + c * y0
    out[1, 3] = v1 + b * x1 + c * y1
    out[2, 3] = v2 + b * x2 + c * y2
    out[3, 0] = 0.0
    out[3, 1] = 0.0
    out[3, 2] = 0.0
    out[3, 3] = 1.0


@njit(cache=True)
def _log6(a, b, out, o, rt):
    """out[o:o+6] = log of the relative pose a b (4 x 4 each) as (v, w): pinocchio's ``log6``
    of ``SE3(a @ b)``; ``rt`` is (3, 4) scratch."""
    r = rt
    for i in range(3):
        for j in range(4):
            r[i, j] = a[i, 0] * b[0, j] + a[i, 1] * b[1, j] + a[i, 2] * b[2, j]
        r[i, 3] += a[i, 3]
    # rotation: sin(th) u = vee((R - R^T) / 2), cos(th) = (tr R - 1) / 2
    s0 = 0.5 * (r[2, 1] - r[1, 2])
    s1 = 0.5 * (r[0, 2] - r[2, 0])
    s2 = 0.5 * (r[1, 0] - r[0, 1])
    sn = math.sqrt(s0 * s0 + s1 * s1 + s2 * s2)
    cs = 0.5 * (r[0, 0] + r[1, 1] + r[2, 2] - 1.0)
    th = math.atan2(sn, cs)
    if th > math.pi - 1e-6:  # near pi the skew part vanishes: the axis from R + R^T
        i = 0 if r[0, 0] >= r[1, 1] and r[0, 0] >= r[2, 2] else (1 if r[1, 1] >= r[2, 2] else 2)
        u = np.empty(3)
        for j in range(3):
            u[j] = 0.5 * (r[i, j] + r[j, i])
        u[i] = r[i, i] - cs
        u /= math.sqrt(u[0] * u[0] + u[1] * u[1] + u[2] * u[2])
        if u[0] * s0 + u[1] * s1 + u[2] * s2 < 0.0:
            u = -u
        w0, w1, w2 = th * u[0], th * u[1], th * u[2]
    else:
        scale = 1.0 + th * th / 6.0 if th < _SMALL else th / sn
        w0, w1, w2 = scale * s0, scale * s1, scale * s2
    t2 = th * th
    # v = V^-1 t, V^-1 = I - W/2 + beta W^2
    if th < _SMALL:
        beta = 1.0 / 12.0 + t2 / 720.0 + t2 * t2 / 30240.0
    else:
        h = math.sin(0.5 * th)
        beta = (1.0 - th * math.sin(th) / (4.0 * h * h)) / t2
    t0, t1, t2_ = r[0, 3], r[1, 3], r[2, 3]
    x0 = w1 * t2_ - w2 * t1
    x1 = w2 * t0 - w0 * t2_
    x2 = w0 * t1 - w1 * t0
    y0, y1, y2 = _skew_sq_apply(w0, w1, w2, t0, t1, t2_)
    out[o + 0] = t0 - 0.5 * x0 + beta * y0
    out[o + 1] = t1 - 0.5 * x1 + beta * y1
    out[o + 2] = t2_ - 0.5 * x2 + beta * y2
    out[o + 3] = w0
    out[o + 4] = w1
    out[o + 5] = w2


@njit(cache=True)
def _invert(pose, out):
    for i in range(3):
        for j in range(3):
            out[i, j] = pose[j, i]
        out[i, 3] = -(pose[0, i] * pose[0, 3] + pose[1, i] * pose[1, 3] + pose[2, i] * pose[2, 3])
        out[3, i] = 0.0
    out[3, 3] = 1.0


@njit(cache=True)
def _matmul4(a, b, out):
    for i in range(4):
        for j in range(4):
            out[i, j] = a[i, 0] * b[0, j] + a[i, 1] * b[1, j] + a[i, 2] * b[2, j] + \
                a[i, 3] * b[3, j]


# ------------------------------------------------------------------------------ neighbours
@njit(cache=True)
def _insert(dist, idx, count, k, d2, j):
    """Keep the k smallest (d2, j) in ascending order; returns the new count."""
    if count == k and d2 >= dist[k - 1]:
        return count
    pos = count if count < k else k - 1
    while pos > 0 and dist[pos - 1] > d2:
        dist[pos] = dist[pos - 1]
        idx[pos] = idx[pos - 1]
        pos -= 1
    dist[pos] = d2
    idx[pos] = j
    return count + 1 if count < k else count


_LEAF = 8  # samples per tree leaf at most


@njit(cache=True)
def build_tree(cloud):
    """A balanced k-d tree over the cloud, as arrays: (sample order, split axis and value per
    inner node, first and last sample per node, bounding box per node); node i's children are
    2i + 1 and 2i + 2, and every leaf holds at most ``_LEAF`` samples."""
    n = cloud.shape[0]
    depth = 0
    while (n + (1 << depth) - 1) >> depth > _LEAF:
        depth += 1
    n_inner = (1 << depth) - 1
    n_nodes = (1 << (depth + 1)) - 1
    order = np.arange(n)
    axis = np.zeros(max(n_inner, 1), dtype=np.int64)
    split = np.zeros(max(n_inner, 1))
    lo = np.zeros(n_nodes, dtype=np.int64)
    hi = np.zeros(n_nodes, dtype=np.int64)
    hi[0] = n
    box = np.empty((n_nodes, 2, 3))
    for i in range(n_inner):  # parents before children
        a, b = lo[i], hi[i]
        best, ax = -1.0, 0
        for d in range(3):
            vmin, vmax = np.inf, -np.inf
            for j in range(a, b):
                v = cloud[order[j], d]
                vmin = min(vmin, v)
                vmax = max(vmax, v)
            if vmax - vmin > best:
                best, ax = vmax - vmin, d
        seg = order[a:b].copy()
        keys = np.empty(b - a)
        for j in range(b - a):
            keys[j] = cloud[seg[j], ax]
        srt = np.argsort(keys, kind="mergesort")
        for j in range(b - a):
            order[a + j] = seg[srt[j]]
        mid = (a + b) // 2
        axis[i] = ax
        split[i] = cloud[order[mid], ax] if b > a else 0.0
        lo[2 * i + 1], hi[2 * i + 1] = a, mid
        lo[2 * i + 2], hi[2 * i + 2] = mid, b
    for i in range(n_nodes):
        for d in range(3):
            box[i, 0, d], box[i, 1, d] = np.inf, -np.inf
            for j in range(lo[i], hi[i]):
                v = cloud[order[j], d]
                box[i, 0, d] = min(box[i, 0, d], v)
                box[i, 1, d] = max(box[i, 1, d], v)
    return order, axis, split, lo, hi, box, np.array([n_inner])


@njit(cache=True)
def _box_dist2(x, box, node):
    s = 0.0
    for d in range(3):
        e = max(box[node, 0, d] - x[d], x[d] - box[node, 1, d], 0.0)
        s += e * e
    return s


@njit(cache=True)
def _knn(x, cloud, tree, k, dist, idx, stack, bound):
    """Exact k nearest samples of x, ascending (squared distances ``dist``, indices ``idx``):
    branch and bound over the tree (a node is skipped when its bounding box is no closer than
    the k-th sample found; the nearer child first)."""
    order, axis, split, lo, hi, box, n_inner_a = tree
    n_inner = n_inner_a[0]
    top = 1
    stack[0] = 0
    bound[0] = 0.0
    count = 0
    while top > 0:
        top -= 1
        node = stack[top]
        if count == k and bound[top] >= dist[k - 1]:
            continue
        while node < n_inner:  # descend to the nearer child, keeping the farther one
            diff = x[axis[node]] - split[node]
            near, far = (2 * node + 1, 2 * node + 2) if diff < 0.0 else \
                (2 * node + 2, 2 * node + 1)
            far_bound = _box_dist2(x, box, far)
            if count < k or far_bound < dist[k - 1]:
                stack[top] = far
                bound[top] = far_bound
                top += 1
            node = near
        for s in range(lo[node], hi[node]):
            j = order[s]
            e0 = x[0] - cloud[j, 0]
            e1 = x[1] - cloud[j, 1]
            e2 = x[2] - cloud[j, 2]
            count = _insert(dist, idx, count, k, e0 * e0 + e1 * e1 + e2 * e2, j)


@njit(cache=True)
def knn_batch(x, cloud, normals, tree, k):
    """The k nearest samples of every query (M, 3): points (M, k, 3), normals (M, k, 3) and
    squared distances (M, k), ascending (what ``ObjectModel.neighbours_unchecked`` returns)."""
    m = x.shape[0]
    near = np.empty((m, k, 3))
    nrm = np.empty((m, k, 3))
    dist = np.empty((m, k))
    idx = np.empty(k, dtype=np.int64)
    stack = np.empty(64, dtype=np.int64)
    bound = np.empty(64)
    for i in range(m):
        _knn(x[i], cloud, tree, k, dist[i], idx, stack, bound)
        for j in range(k):
            near[i, j] = cloud[idx[j]]
            nrm[i, j] = normals[idx[j]]
    return near, nrm, dist


# ------------------------------------------------------------------------------ evaluation
@njit(cache=True)
def _evaluate(pose, q, kin_i, kin_f, frame_i, frame_f, surf, fp, ip, s_pose, s_q, s_r, s_jac,
              s_err, s_terms, work):
    """One candidate: contact residuals and Jacobian rows (zero rows where inactive), prior
    errors (gen, vel, acc) and terms (contact, gen, vel, acc, total) into the state slot
    arrays; ``work`` holds the scratch arrays (see :func:`_work`)."""
    parent, revolute, kp_joint, support = kin_i
    placement, axis, mimic, mimic_offset, kp_offset, wrist_from_root = kin_f
    idx, = frame_i
    pull, obj_inv, gen_inv, prev_inv, q_gen, q_prev, prev_vel, w_gen, w_vel, w_acc = frame_f
    cloud, cloud_nrm, tree = surf
    alpha, kk, lam_c, eps, inv_h2 = fp[P_ALPHA], fp[P_K], fp[P_LAMBDA_C], fp[P_EPSILON], \
        fp[P_INV_H2]
    n_nb = ip[I_NEIGHBOURS]
    dof = q.shape[0]
    nvar = 6 + dof
    nj = parent.shape[0]
    s_pose[:, :] = pose
    s_q[:] = q
    # forward kinematics from the world pose of the URDF root
    q_full, root, rot, pos, axw, x, m, nb, dist, stack, bound, rt, vec = work
    for a in range(q_full.shape[0]):
        q_full[a] = mimic_offset[a]
        for b in range(dof):
            q_full[a] += mimic[a, b] * q[b]
    _matmul4(pose, wrist_from_root, root)
    rot[0] = root[:3, :3]
    pos[0] = root[:3, 3]
    for i in range(1, nj):
        par = parent[i]
        for a in range(3):
            for b in range(3):
                x[a, b] = rot[par, a, 0] * placement[i, 0, b] + \
                    rot[par, a, 1] * placement[i, 1, b] + rot[par, a, 2] * placement[i, 2, b]
            pos[i, a] = pos[par, a] + rot[par, a, 0] * placement[i, 0, 3] + \
                rot[par, a, 1] * placement[i, 1, 3] + rot[par, a, 2] * placement[i, 2, 3]
            axw[i, a] = x[a, 0] * axis[i, 0] + x[a, 1] * axis[i, 1] + x[a, 2] * axis[i, 2]
        qi = q_full[i - 1]
        if revolute[i]:
            # R = x (I + sin K + (1 - cos) K^2), K = [axis]
            s, c = math.sin(qi), 1.0 - math.cos(qi)
            u0, u1, u2 = axis[i, 0], axis[i, 1], axis[i, 2]
            m[0, 0] = 1.0 + c * (u0 * u0 - 1.0)
            m[1, 1] = 1.0 + c * (u1 * u1 - 1.0)
            m[2, 2] = 1.0 + c * (u2 * u2 - 1.0)
            m[0, 1] = -s * u2 + c * u0 * u1
            m[1, 0] = s * u2 + c * u0 * u1
            m[0, 2] = s * u1 + c * u0 * u2
            m[2, 0] = -s * u1 + c * u0 * u2
            m[1, 2] = -s * u0 + c * u1 * u2
            m[2, 1] = s * u0 + c * u1 * u2
            for a in range(3):
                for b in range(3):
                    rot[i, a, b] = x[a, 0] * m[0, b] + x[a, 1] * m[1, b] + x[a, 2] * m[2, b]
        else:
            for a in range(3):
                for b in range(3):
                    rot[i, a, b] = x[a, b]
                pos[i, a] += axw[i, a] * qi
    # contact rows
    n_pts = idx.shape[0]
    p, xo, g, gl = vec[0], vec[1], vec[2], vec[3]
    e_contact = 0.0
    scale = math.sqrt(2.0 * lam_c)
    for m_ in range(n_pts):
        kp = idx[m_]
        j = kp_joint[kp]
        for a in range(3):
            p[a] = pos[j, a] + rot[j, a, 0] * kp_offset[kp, 0] + rot[j, a, 1] * kp_offset[kp, 1] \
                + rot[j, a, 2] * kp_offset[kp, 2]
        for a in range(3):
            xo[a] = obj_inv[a, 0] * p[0] + obj_inv[a, 1] * p[1] + obj_inv[a, 2] * p[2] + \
                obj_inv[a, 3]
        _knn(xo, cloud, tree, n_nb, dist, nb, stack, bound)
        # Gaussian-weighted point-to-plane distance and normal (one neighbour: the plane)
        wsum = 0.0
        d = 0.0
        gl[:] = 0.0
        for i in range(n_nb):
            wt = math.exp(-(dist[i] - dist[0]) * inv_h2)
            wsum += wt
            j = nb[i]
            d += wt * (cloud_nrm[j, 0] * (xo[0] - cloud[j, 0])
                       + cloud_nrm[j, 1] * (xo[1] - cloud[j, 1])
                       + cloud_nrm[j, 2] * (xo[2] - cloud[j, 2]))
            gl[0] += wt * cloud_nrm[j, 0]
            gl[1] += wt * cloud_nrm[j, 1]
            gl[2] += wt * cloud_nrm[j, 2]
        d /= wsum
        s_jac[m_, :] = 0.0
        if not (pull[m_] > 0.0 or d < 0.0):
            s_r[m_] = 0.0
            continue
        inside = min(d, 0.0)
        outside = max(d, 0.0)
        e = math.exp(-kk * inside)
        pulled = alpha * pull[m_] * outside
        f = 0.5 * pulled * outside + (alpha / (kk * kk)) * (e + kk * inside - 1.0)
        slope = pulled + (alpha / kk) * (1.0 - e)
        root_f = math.sqrt(f)
        s_r[m_] = scale * root_f
        dr = scale * slope / (2.0 * root_f + eps * eps)
        e_contact += f
        # dd/dp_world = n^T R_obj^-1 (the normal in the world), times dr
        for a in range(3):
            g[a] = dr * (gl[0] * obj_inv[0, a] + gl[1] * obj_inv[1, a]
                         + gl[2] * obj_inv[2, a]) / wsum
        # wrist: translation columns R_wrist, rotation columns r_j x (p - t_wrist)
        l0, l1, l2 = p[0] - pose[0, 3], p[1] - pose[1, 3], p[2] - pose[2, 3]
        c0 = l1 * g[2] - l2 * g[1]
        c1 = l2 * g[0] - l0 * g[2]
        c2 = l0 * g[1] - l1 * g[0]
        for b in range(3):
            s_jac[m_, b] = g[0] * pose[0, b] + g[1] * pose[1, b] + g[2] * pose[2, b]
            s_jac[m_, 3 + b] = c0 * pose[0, b] + c1 * pose[1, b] + c2 * pose[2, b]
        # fingers: every full joint that moves the keypoint, through the mimic map
        for fj in range(nj - 1):
            if not support[kp, fj]:
                continue
            jj = fj + 1
            if revolute[jj]:
                l0, l1, l2 = p[0] - pos[jj, 0], p[1] - pos[jj, 1], p[2] - pos[jj, 2]
                col0 = axw[jj, 1] * l2 - axw[jj, 2] * l1
                col1 = axw[jj, 2] * l0 - axw[jj, 0] * l2
                col2 = axw[jj, 0] * l1 - axw[jj, 1] * l0
            else:
                col0, col1, col2 = axw[jj, 0], axw[jj, 1], axw[jj, 2]
            dot = g[0] * col0 + g[1] * col1 + g[2] * col2
            for a in range(dof):
                s_jac[m_, 6 + a] += dot * mimic[fj, a]
    # priors
    _log6(gen_inv, pose, s_err[0], 0, rt)
    _log6(prev_inv, pose, s_err[1], 0, rt)
    for a in range(dof):
        s_err[0, 6 + a] = q[a] - q_gen[a]
        s_err[1, 6 + a] = q[a] - q_prev[a]
    e_gen = 0.0
    e_vel = 0.0
    e_acc = 0.0
    for a in range(nvar):
        s_err[2, a] = s_err[1, a] - prev_vel[a]
        e_gen += w_gen[a] * (s_err[0, a] * s_err[0, a])
        e_vel += w_vel[a] * (s_err[1, a] * s_err[1, a])
        e_acc += w_acc[a] * (s_err[2, a] * s_err[2, a])
    s_terms[0] = lam_c * e_contact
    s_terms[1] = 0.5 * e_gen
    s_terms[2] = 0.5 * e_vel
    s_terms[3] = 0.5 * e_acc
    s_terms[4] = s_terms[0] + s_terms[1] + s_terms[2] + s_terms[3]


@njit(cache=True)
def _work(n_joints, n_full, n_neighbours):
    """Scratch arrays of :func:`_evaluate`, allocated once per trajectory."""
    return (np.empty(n_full), np.empty((4, 4)), np.empty((n_joints, 3, 3)),
            np.empty((n_joints, 3)), np.empty((n_joints, 3)), np.empty((3, 3)),
            np.empty((3, 3)), np.empty(n_neighbours, dtype=np.int64), np.empty(n_neighbours),
            np.empty(64, dtype=np.int64), np.empty(64), np.empty((3, 4)), np.empty((4, 3)))


@njit(cache=True)
def _cholesky_solve(a, b, out):
    """Solve a x = b for symmetric positive definite a (n x n, overwritten) into out."""
    n = a.shape[0]
    for j in range(n):
        s = a[j, j]
        for k in range(j):
            s -= a[j, k] * a[j, k]
        if s <= 0.0:
            return False
        d = math.sqrt(s)
        a[j, j] = d
        for i in range(j + 1, n):
            s = a[i, j]
            for k in range(j):
                s -= a[i, k] * a[j, k]
            a[i, j] = s / d
    for i in range(n):  # L y = b
        s = b[i]
        for k in range(i):
            s -= a[i, k] * out[k]
        out[i] = s / a[i, i]
    for i in range(n - 1, -1, -1):  # L^T x = y
        s = out[i]
        for k in range(i + 1, n):
            s -= a[k, i] * out[k]
        out[i] = s / a[i, i]
    return True


# ------------------------------------------------------------------------------ trajectory
@njit(cache=True)
def refine_trajectory(kin_i, kin_f, lower, upper, wrist_poses, q_gen, obj_inv, gen_inv,
                      points, offsets, pull, cloud, cloud_nrm, tree, w_gen, w_vel, w_acc, free,
                      fp, ip, out_pose, out_q, before, after, tried_out, accepted_out):
    """Refine every frame in order (see the module doc) into the ``out_*``, ``before``,
    ``after``, ``tried_out`` and ``accepted_out`` arrays. Frame t's checked points are
    ``points[offsets[t]:offsets[t + 1]]``, their pull weights at the same rows."""
    frames, dof = q_gen.shape
    nvar = 6 + dof
    tol, lam_init, lam_up, lam_down, lam_max = fp[P_TOLERANCE], fp[P_LAMBDA_INIT], \
        fp[P_LAMBDA_UP], fp[P_LAMBDA_DOWN], fp[P_LAMBDA_MAX]
    max_it, fingers_only, joint_limits, warm = ip[I_MAX_ITERATIONS], ip[I_FINGERS_ONLY] != 0, \
        ip[I_JOINT_LIMITS] != 0, ip[I_WARM_START] != 0
    m_max = 0
    for t in range(frames):
        m_max = max(m_max, offsets[t + 1] - offsets[t])
    # two state slots (current, candidate), swapped on acceptance
    s_pose = np.empty((2, 4, 4))
    s_q = np.empty((2, dof))
    s_r = np.empty((2, m_max))
    s_jac = np.empty((2, m_max, nvar))
    s_err = np.empty((2, 3, nvar))
    s_terms = np.empty((2, 5))
    w_sum = w_gen + w_vel + w_acc
    free_idx = np.flatnonzero(free)
    nf = free_idx.shape[0]
    lhs = np.empty((nf, nf))
    rhs = np.empty(nf)
    sol = np.empty(nf)
    step = np.zeros(nvar)
    prev_inv = np.empty((4, 4))
    t2_inv = np.empty((4, 4))
    prev_vel = np.empty(nvar)
    init_pose = np.empty((4, 4))
    tmp = np.empty((4, 4))
    cand_pose = np.empty((4, 4))
    cand_q = np.empty(dof)
    exp_step = np.empty((4, 4))
    work = _work(kin_i[0].shape[0], kin_f[2].shape[0], ip[I_NEIGHBOURS])
    rt = np.empty((3, 4))
    # boundary priors: q_-2 = q_-1 = q_0^gen
    pose_t2, pose_t1 = wrist_poses[0].copy(), wrist_poses[0].copy()
    q_t2, q_t1 = q_gen[0].copy(), q_gen[0].copy()
    for t in range(frames):
        lo, hi = offsets[t], offsets[t + 1]
        _invert(pose_t1, prev_inv)
        _invert(pose_t2, t2_inv)
        _log6(t2_inv, pose_t1, prev_vel, 0, rt)
        for a in range(dof):
            prev_vel[6 + a] = q_t1[a] - q_t2[a]
        frame_i = (points[lo:hi],)
        frame_f = (pull[lo:hi], obj_inv[t], gen_inv[t], prev_inv, q_gen[t], q_t1, prev_vel,
                   w_gen, w_vel, w_acc)
        surf = (cloud, cloud_nrm, tree)
        cur, cnd = 0, 1
        _evaluate(wrist_poses[t], q_gen[t], kin_i, kin_f, frame_i, frame_f, surf, fp,
                           ip, s_pose[cur], s_q[cur], s_r[cur], s_jac[cur], s_err[cur],
                           s_terms[cur], work)
        before[t, :] = s_terms[cur]
        if warm and t > 0:  # carry the previous frame's correction over
            _matmul4(wrist_poses[t], gen_inv[t - 1], tmp)
            _matmul4(tmp, out_pose[t - 1], init_pose)
            for a in range(dof):
                cand_q[a] = min(max(q_gen[t, a] + out_q[t - 1, a] - q_gen[t - 1, a],
                                    lower[a]), upper[a])
            _evaluate(init_pose, cand_q, kin_i, kin_f, frame_i, frame_f, surf, fp, ip,
                               s_pose[cnd], s_q[cnd], s_r[cnd], s_jac[cnd], s_err[cnd],
                               s_terms[cnd], work)
            if not s_terms[cnd, 4] > s_terms[cur, 4]:
                cur, cnd = cnd, cur
        m = hi - lo
        lam = lam_init
        tried = 0
        accepted = 0
        while tried < max_it:
            tried += 1
            jac = s_jac[cur]
            r = s_r[cur]
            err = s_err[cur]
            for a in range(nf):
                ca = free_idx[a]
                for b in range(a + 1):
                    cb = free_idx[b]
                    s = 0.0
                    for i in range(m):
                        s += jac[i, ca] * jac[i, cb]
                    lhs[a, b] = s
                    lhs[b, a] = s
                lhs[a, a] += w_sum[ca] + lam
                s = 0.0
                for i in range(m):
                    s += jac[i, ca] * r[i]
                rhs[a] = -(s + (w_gen[ca] * err[0, ca] + w_vel[ca] * err[1, ca]
                                + w_acc[ca] * err[2, ca]))
            if not _cholesky_solve(lhs, rhs, sol):
                break  # not reached: the matrix is positive definite
            predicted = 0.0
            for a in range(nf):
                predicted += sol[a] * (rhs[a] + lam * sol[a])
                step[free_idx[a]] = sol[a]
            # the damped model's predicted decrease below the tolerance: converged
            if 0.5 * predicted < tol * s_terms[cur, 4]:
                tried -= 1
                break
            if fingers_only:
                cand_pose[:, :] = s_pose[cur]
            else:
                _exp6(step[:6], exp_step)
                _matmul4(s_pose[cur], exp_step, cand_pose)
            for a in range(dof):
                v = s_q[cur, a] + step[6 + a]
                cand_q[a] = min(max(v, lower[a]), upper[a]) if joint_limits else v
            _evaluate(cand_pose, cand_q, kin_i, kin_f, frame_i, frame_f, surf, fp, ip,
                               s_pose[cnd], s_q[cnd], s_r[cnd], s_jac[cnd], s_err[cnd],
                               s_terms[cnd], work)
            if s_terms[cnd, 4] < s_terms[cur, 4]:
                decrease = (s_terms[cur, 4] - s_terms[cnd, 4]) / max(s_terms[cur, 4], 1e-300)
                cur, cnd = cnd, cur
                accepted += 1
                lam = max(lam / lam_down, 1e-12)
                if decrease < tol:
                    break
            else:
                lam *= lam_up
                if lam > lam_max:
                    break
        after[t, :] = s_terms[cur]
        out_pose[t] = s_pose[cur]
        out_q[t] = s_q[cur]
        tried_out[t] = tried
        accepted_out[t] = accepted
        pose_t2, pose_t1 = pose_t1, out_pose[t].copy()
        q_t2, q_t1 = q_t1, out_q[t].copy()
