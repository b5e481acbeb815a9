"""The greedy decoding loop of the tiny generator, compiled with numba.

Why: after the prefill, a greedy generation is ~30 steps of one column through the decoder.
At the tiny config's size a step is ~20 tensor calls per layer of a few microseconds of
arithmetic each, so even run by TorchScript's static runtime (``decode.IncrementalDecoder``)
a step costs ~0.23 ms, half of it per-call overhead. Here the whole loop (every step, every
layer, the pick and the next input) is one compiled function over numpy views of the same
weights and of the cache the prefill wrote: BLAS matrix-vector products and plain loops,
no per-call cost.

Same arithmetic as transformers' Qwen3 (RMSNorm in float32, q/k head norms, RoPE from the
model's own cos/sin tables, grouped-query attention with the 1/sqrt(D) scale, SiLU-gated MLP,
final norm) and the same picks as ``decode._greedy_steps`` (argmax over the pickable rows,
first index on ties, the picked row's input embedding plus the slot's conditioning fed
back). Products sum in a different order than torch's kernels, so hidden states agree to
float rounding (~1e-6), not bit for bit; the tests hold the paths together.

Only unpadded batches (no left padding) run here; ``IncrementalDecoder.greedy`` keeps the
torch loop for the rest, and when numba is missing or ``UNIHM_NO_NUMBA_DECODE=1``.
"""

# ruff: noqa: PLR0912, PLR0917

from __future__ import annotations

import contextlib
import math
import os
from typing import Any

import numpy as np

from unihm_core.numba_support import AVAILABLE, njit


def enabled() -> bool:
    """Whether the compiled loop may run (numba importable and not switched off)."""
    return AVAILABLE and os.environ.get("UNIHM_NO_NUMBA_DECODE", "") in ("", "0")


_BLAS: Any = None


def _one_blas_thread() -> contextlib.AbstractContextManager[Any]:
    """BLAS limited to one thread while the loop runs.

    Why: the loop's products come from scipy's OpenBLAS (numba's ``np.dot``), which splits a
    product of a few rows over every core; at this size the threads only wait for each
    other (measured per step for a batch of 8: 1.28 ms with two threads, 0.28-0.39 ms with
    one). The limit is set and restored around each call (~16 us).
    """
    global _BLAS  # noqa: PLW0603 - one controller per process, built on first use
    if _BLAS is None:
        try:
            import scipy.linalg.cython_blas  # noqa: F401 - loaded, so that it is found
            from threadpoolctl import ThreadpoolController

            _BLAS = ThreadpoolController().select(user_api="blas")
        except ImportError:
            _BLAS = False
    return _BLAS.limit(limits=1) if _BLAS else contextlib.nullcontext()


def run_greedy(*operands: Any) -> None:
    """``greedy_steps`` with BLAS on one thread (its arguments, in its order)."""
    with _one_blas_thread():
        greedy_steps(*operands)


@njit(cache=True, inline="always", fastmath={"reassoc", "contract"})
def _inv_rms(x, eps):
    """1 / sqrt(mean(x^2) + eps): RMSNorm's scale."""
    var = np.float32(0.0)
    for i in range(x.shape[0]):
        var += x[i] * x[i]
    return np.float32(1.0) / np.float32(math.sqrt(var / np.float32(x.shape[0]) + eps))


@njit(cache=True, inline="always", fastmath={"reassoc", "contract"})
def _rms_norm(x, weight, eps, out):
    scale = _inv_rms(x, eps)
    for i in range(x.shape[0]):
        out[i] = weight[i] * (x[i] * scale)


@njit(cache=True, inline="always", fastmath={"reassoc", "contract"})
def _head_norm_rope(src, weight, eps, cos, sin, dst):
    """RMSNorm of one head (D,) with ``weight``, then RoPE at one position into ``dst``."""
    half = src.shape[0] // 2
    scale = _inv_rms(src, eps)
    for i in range(half):
        a = weight[i] * (src[i] * scale)
        b = weight[i + half] * (src[i + half] * scale)
        dst[i] = a * cos[i] - b * sin[i]
        dst[i + half] = b * cos[i + half] + a * sin[i + half]


@njit(cache=True, inline="always", fastmath={"reassoc", "contract"})
def _attend(q, k_cache, v_cache, end, scale, probs, out):
    """One query head over the first ``end`` cached columns of its kv head, into ``out``."""
    d = q.shape[0]
    top = -np.inf
    for c in range(end):
        s = np.float32(0.0)
        for i in range(d):
            s += q[i] * k_cache[c, i]
        probs[c] = s * scale
        top = max(top, probs[c])
    total = np.float32(0.0)
    for c in range(end):
        probs[c] = np.float32(math.exp(probs[c] - top))
        total += probs[c]
    out[:] = 0.0
    for c in range(end):
        p = probs[c] / total
        for i in range(d):
            out[i] += p * v_cache[c, i]


@njit(cache=True, nogil=True, fastmath={"reassoc", "contract"})
def greedy_steps(last, inputs, head, rows, norms_in, qkvs, q_norms, k_norms, outs, norms_post,
                 gate_ups, downs, final_norm, keys, values, cos, sin, t0, count, eps,
                 codes, hidden):
    """Greedy picks of ``count`` slots, written into ``codes`` (B, count) and ``hidden``
    (B, count, H).

    ``last`` (B, H): the prefill's final hidden state of its last column; ``inputs`` (B,
    count - 1, H): the next slots' inputs apart from the pick; ``head`` (H, V): output weights
    of the pickable rows, whose pick v feeds ``rows[v]`` (V, H) back. Per layer (stacked on
    the first axis): RMSNorm weights, the grouped q/k/v projection (H, (heads + 2 kv) * D;
    per kv head its q heads then its k, then every v), head norm weights, output projection
    (heads * D, H), gate/up (H, 2I), down (I, H). ``keys``/``values`` (layers, B, kv, P, D)
    hold the prefill's columns [0, t0) and take the new ones; ``cos``/``sin`` (P, D) RoPE.
    """
    b_size, h = last.shape
    layers, kv, d = keys.shape[0], keys.shape[2], keys.shape[4]
    hq_all = qkvs.shape[2] // d              # heads + 2 kv
    heads = hq_all - 2 * kv
    group = heads // kv
    inter = downs.shape[1]
    scale = np.float32(1.0 / math.sqrt(d))
    # rows of the batch go through each product together: the weights are read once a step
    state = last.copy()
    x = np.empty((b_size, h), np.float32)
    xn = np.empty((b_size, h), np.float32)
    q = np.empty((heads, d), np.float32)
    att = np.empty((b_size, heads * d), np.float32)
    act = np.empty((b_size, inter), np.float32)
    probs = np.empty(keys.shape[3], np.float32)
    for j in range(count):
        logits = np.dot(state, head)
        for b in range(b_size):
            codes[b, j] = np.argmax(logits[b])
            hidden[b, j] = state[b]
        if j == count - 1:
            break
        for b in range(b_size):
            x[b] = rows[codes[b, j]] + inputs[b, j]
        t = t0 + j
        for layer in range(layers):
            for b in range(b_size):
                _rms_norm(x[b], norms_in[layer], eps, xn[b])
            proj = np.dot(xn, qkvs[layer])
            for b in range(b_size):
                for kh in range(kv):
                    base = kh * (group + 1)
                    for g in range(group):
                        _head_norm_rope(proj[b, (base + g) * d:(base + g + 1) * d],
                                        q_norms[layer], eps, cos[t], sin[t], q[kh * group + g])
                    _head_norm_rope(proj[b, (base + group) * d:(base + group + 1) * d],
                                    k_norms[layer], eps, cos[t], sin[t], keys[layer, b, kh, t])
                    v0 = (heads + kv + kh) * d
                    for i in range(d):
                        values[layer, b, kh, t, i] = proj[b, v0 + i]
                for head_i in range(heads):
                    kh = head_i // group
                    _attend(q[head_i], keys[layer, b, kh], values[layer, b, kh], t + 1, scale,
                            probs, att[b, head_i * d:(head_i + 1) * d])
            x += np.dot(att, outs[layer])
            for b in range(b_size):
                _rms_norm(x[b], norms_post[layer], eps, xn[b])
            gu = np.dot(xn, gate_ups[layer])
            for b in range(b_size):
                for i in range(inter):
                    g = gu[b, i]
                    act[b, i] = g / (np.float32(1.0) + np.float32(math.exp(-g))) * gu[b, inter + i]
            x += np.dot(act, downs[layer])
        for b in range(b_size):
            _rms_norm(x[b], final_norm, eps, state[b])
