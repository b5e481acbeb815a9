"""Incremental decoding of the Qwen3 decoder with a preallocated KV cache.

Why this exists: the tiny generator's step costs a few microseconds of arithmetic per
operation, but transformers' forward issues ~30 small operations per layer through several
Python module layers, builds a causal mask and position embeddings per call and grows a
``DynamicCache`` by concatenation. Profiled, that overhead made a cached step (~2 ms) nearly
as slow as re-running the whole sequence. This module runs the same arithmetic (same weights,
same RMSNorm / RoPE / GQA attention semantics) with everything that does not change within a
generation built once:

* the key/value cache is allocated for the whole generation and written in place; scratch
  buffers take the step's products (``out=``);
* q, k and v come out of one matrix product, gate and up out of another;
* every RMSNorm is one ``layer_norm`` call: the residual stream is kept as ``[x, -x]``, whose
  mean is zero and whose variance is ``mean(x^2)``, so ``layer_norm([x, -x], eps)`` starts
  with ``x * rsqrt(mean(x^2) + eps)``; the q/k head norms run on ``[h, -h]`` the same way;
* RoPE tables per position carry the q/k norm weights and the rotate-half sign, so RoPE is one
  weighted sum over three windows of the head norm's output (``FlatWeights.rope_tables``);
* the projection's q and k heads are grouped per kv head (``[q, .., q, k]`` for each), so
  a step's queries are one ``(rows * kv heads, heads per kv head, D)`` view and attend to
  their kv head's cached columns in one batched product, without a bias unless the batch is
  left-padded; the softmax scale is folded into the query's RoPE table;
* the prefill's layers and the greedy loop run as one TorchScript call each (``_compiled``);
  for an unpadded batch the greedy loop runs compiled by numba instead (``greedy_loop``).

Outputs agree with transformers' forward up to float rounding (tests compare hidden states
and generated tokens). Only float32 weights without autocast, the plain Qwen3 layout (no
attention bias, no sliding window, default RoPE) and small decoders qualify (``supported``);
anything else uses transformers' own cache.
"""

from __future__ import annotations

import os
import threading
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from unihm_generator.generator import greedy_loop

# FlatWeights keeps a rearranged copy of the decoder layers' weights: worth it where per-call
# overhead dominates a step (small models); larger ones keep transformers' cache
MAX_LAYER_PARAMETERS = 50_000_000


def _layout(lm: nn.Module) -> tuple[int, bool]:
    """The decoder layers' parameter count and whether the config is the plain Qwen3 layout.

    Kept on the model per config object: the ~15 config reads (transformers' attribute
    lookup) cost ~30 us, every request.
    """
    cfg = lm.config
    cached = lm.__dict__.get("_unihm_layout")
    if cached is not None and cached[0] is cfg:
        return cached[1], cached[2]
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
    per_layer = cfg.hidden_size * (head_dim * (2 * cfg.num_attention_heads
                                               + 2 * cfg.num_key_value_heads)
                                   + 3 * cfg.intermediate_size)
    rope = getattr(cfg, "rope_scaling", None) or {}
    rope_type = rope.get("rope_type", rope.get("type", "default")) if rope else "default"
    layer_types = getattr(cfg, "layer_types", None) or ["full_attention"]
    plain = (not getattr(cfg, "attention_bias", False)
             and not getattr(cfg, "use_sliding_window", False)
             and all(t == "full_attention" for t in layer_types)
             and rope_type == "default" and cfg.hidden_act == "silu"
             and getattr(cfg, "attention_dropout", 0.0) == 0.0)
    lm.__dict__["_unihm_layout"] = (cfg, cfg.num_hidden_layers * per_layer, plain)
    return cfg.num_hidden_layers * per_layer, plain


def supported(lm: nn.Module) -> bool:
    """Whether ``lm`` (a ``Qwen3ForCausalLM``) can be decoded by ``IncrementalDecoder``."""
    count, plain = _layout(lm)
    if count > MAX_LAYER_PARAMETERS or not plain:
        return False
    weight = lm.get_input_embeddings().weight
    return (weight.dtype == torch.float32 and weight.device.type == "cpu"
            and not torch.is_autocast_enabled("cpu"))


def _swap(w: Tensor) -> Tensor:
    """Swap the two halves of the last dimension (rotate-half without the sign)."""
    half = w.shape[-1] // 2
    return torch.cat([w[..., half:], w[..., :half]], -1)


@dataclass
class _Layer:
    norm_in: Tensor     # (2, H) input RMSNorm weight, twice
    qkv: Tensor         # (H, (heads + 2 kv) * D): per kv head its q heads and k, then v
    q_norm: Tensor      # (D,)
    k_norm: Tensor      # (D,)
    out: Tensor         # (heads * D, H)
    norm_post: Tensor   # (2, H)
    gate_up: Tensor     # (H, 2I)
    down: Tensor        # (I, H)


class FlatWeights:
    """The decoder's weights laid out for ``IncrementalDecoder`` (built from the live model)."""

    def __init__(self, lm: nn.Module, first_row: int = 0) -> None:
        """``first_row``: the vocabulary rows from there on are the ones generation picks."""
        cfg = lm.config
        self.hidden = cfg.hidden_size
        self.heads, self.kv_heads = cfg.num_attention_heads, cfg.num_key_value_heads
        self.head_dim = getattr(cfg, "head_dim", None) or self.hidden // self.heads
        self.eps = float(cfg.rms_norm_eps)
        self.intermediate = cfg.intermediate_size
        self.scale = self.head_dim ** -0.5
        d, kv = self.head_dim, self.kv_heads
        self.group = self.heads // kv                    # query heads per kv head
        # the q/k head norms' weights live in the RoPE tables; layer_norm runs faster with a
        # weight of ones than with none (another kernel path), same values
        self.head_ones = torch.ones(2 * d, dtype=lm.lm_head.weight.dtype,
                                    device=lm.lm_head.weight.device)
        self.sign = torch.tensor([[1.0], [-1.0]], dtype=lm.lm_head.weight.dtype,
                                 device=lm.lm_head.weight.device)     # [x, -x] from x
        self.workspace = threading.local()      # IncrementalDecoder's buffers, per thread
        self.layers: list[_Layer] = []
        for layer in lm.model.layers:
            att, mlp = layer.self_attn, layer.mlp
            # rows grouped per kv head: [q_j0, .., q_j(group-1), k_j] for every kv head j
            # (transformers' GQA gives query head i the kv head i // group), then v
            qk = torch.cat([att.q_proj.weight.view(kv, self.group, d, -1),
                            att.k_proj.weight.view(kv, 1, d, -1)], 1).flatten(0, 2)
            qkv = torch.cat([qk, att.v_proj.weight], 0)
            self.layers.append(_Layer(
                norm_in=layer.input_layernorm.weight.repeat(2, 1),
                qkv=qkv.t().contiguous(),
                q_norm=att.q_norm.weight, k_norm=att.k_norm.weight,
                out=att.o_proj.weight.t().contiguous(),
                norm_post=layer.post_attention_layernorm.weight.repeat(2, 1),
                gate_up=torch.cat([mlp.gate_proj.weight, mlp.up_proj.weight], 0).t().contiguous(),
                down=mlp.down_proj.weight.t().contiguous()))
        self.norm = lm.model.norm.weight.repeat(2, 1)
        self.first_row = first_row
        # the output rows that can be picked, transposed for the step's product, and their
        # input embeddings as [e, -e]
        self.head = lm.lm_head.weight[first_row:].t().contiguous()
        self.inputs = augment(lm.get_input_embeddings().weight[first_row:]).contiguous()
        self.owner = lm
        self.rotary = lm.model.rotary_emb
        self.rope: list[Tensor] = []                      # per layer (P, hq, 3, D)
        self.params = list(lm.parameters())
        self.key = self.version(self.params)
        self._loop: tuple[Any, ...] | None = None    # loop_operands, built on first use

    def rope_tables(self, positions: int) -> None:
        """RoPE for positions [0, P >= ``positions``) with the q/k norm weights folded in.

        The head norm runs on [h, -h] = [h1, h2, -h1, -h2] and yields [n, -n]; its windows
        of width D at offsets 0, D/2 and D are n, [n2, -n1] and -n, so
        ``rope(w * n) = n * (w cos) + [n2, -n1] * (-swap(w) sin) + (-n) * 0``: one weighted
        sum over the three windows with these tables. The query heads' tables also carry the
        softmax scale (one multiplication less per step). Heads in the projection's grouped
        order. Kept across generations (they depend on the position only, like transformers'
        own cos/sin caches).
        """
        if self.rope and self.rope[0].shape[0] >= positions:
            return
        count = -(-positions // 64) * 64
        weight = self.layers[0].qkv
        probe = torch.zeros(1, dtype=weight.dtype, device=weight.device)
        cos, sin = self.rotary(probe, torch.arange(count, device=weight.device)[None])
        cos, sin = cos[0, :, None], sin[0, :, None]                       # (P, 1, D)
        d, group, kv = self.head_dim, self.group, self.kv_heads
        tables = []
        for layer in self.layers:
            norms = torch.cat([(layer.q_norm * self.scale).expand(kv, group, d),
                               layer.k_norm.expand(kv, 1, d)], 1).view(-1, d)
            tables.append(torch.stack([cos * norms, sin * -_swap(norms),
                                       torch.zeros_like(cos * norms)], 2))  # (P, hq, 3, D)
        self.rope = tables          # swapped in whole: a concurrent reader sees old or new

    def loop_operands(self, positions: int) -> tuple[Any, ...]:
        """The weights as numpy arrays for ``greedy_loop.greedy_steps`` (per-layer ones
        stacked), with RoPE cos/sin for positions [0, P >= ``positions``); built once and
        kept (views of the same values, the stacks are copies)."""
        kept = self._loop
        if kept is not None and kept[-1].shape[0] >= positions:
            return kept
        import numpy as np

        def stack(name: str, row: int | None = None) -> Any:
            """Every layer's ``name`` stacked (``row`` 0: the [x, -x] layout's x)."""
            return np.ascontiguousarray(np.stack([
                (getattr(layer, name) if row is None else getattr(layer, name)[row]).numpy()
                for layer in self.layers]))

        with torch.no_grad():
            count = -(-positions // 64) * 64
            weight = self.layers[0].qkv
            probe = torch.zeros(1, dtype=weight.dtype, device=weight.device)
            cos, sin = self.rotary(probe, torch.arange(count, device=weight.device)[None])
            operands = (
                np.ascontiguousarray(self.inputs[:, 0].numpy()),
                stack("norm_in", 0), stack("qkv"), stack("q_norm"), stack("k_norm"),
                stack("out"), stack("norm_post", 0), stack("gate_up"), stack("down"),
                np.ascontiguousarray(self.norm[0].numpy()),
                np.ascontiguousarray(cos[0].numpy()), np.ascontiguousarray(sin[0].numpy()))
        self._loop = operands
        return operands

    @staticmethod
    def version(params: list[Tensor]) -> tuple[tuple[int, int], ...]:
        """Storage and in-place version of every parameter: changes when they are edited."""
        return tuple((p.data_ptr(), p._version) for p in params)

    def current(self, lm: nn.Module, first_row: int = 0) -> bool:
        """Whether these weights still are ``lm``'s (same parameters, none edited since)."""
        return (self.owner is lm and self.first_row == first_row
                and self.version(self.params) == self.key)


def augment(x: Tensor) -> Tensor:
    """``x -> [x, -x]`` stacked on a new second-to-last dimension (the residual's layout)."""
    return torch.stack([x, -x], -2)


class IncrementalDecoder:
    """Prefill once, then one position per ``step`` for every row of a left-padded batch.

    ``mask`` (B, T) marks the prefix's real positions (left padding is 0); ``positions``
    (B, T + steps) are the RoPE positions of every column the generation will reach. The
    residual stream is (rows, 2, H) holding ``[x, -x]``.

    A step issues ~20 tensor calls per layer; everything else is prepared here: the cache,
    RoPE operands indexed by column, scratch buffers the step's products write into
    (``out=``) and fixed views of them, the attention bias (left-padded batches only).

    ``reuse``: take over the cache and buffers of the previous decoder this thread built
    with ``reuse`` for the same weights, shape and no padding (~40 tensors and views, ~0.1
    ms a request); for callers done with that decoder (``generate`` is). A step reads only
    columns this generation wrote, so nothing needs clearing.
    """

    def __init__(self, lm: nn.Module, weights: FlatWeights, mask: Tensor,
                 positions: Tensor, reuse: bool = False) -> None:
        self.w = weights
        b, t0 = mask.shape
        total = positions.shape[1]
        d, heads, kv, group = weights.head_dim, weights.heads, weights.kv_heads, weights.group
        hq, layers = heads + kv, len(weights.layers)
        self.batch, self.t0, self.t = b, t0, t0
        dev = mask.device
        self.sign = weights.sign
        self.head_ones = weights.head_ones
        valid = mask.bool()
        self.padded = not bool(valid.all())
        self.valid = valid[:, None, None]
        # RoPE operands (FlatWeights.rope_tables): without padding, column c is position c
        # for every row; with it, each row's positions are gathered
        weights.rope_tables(total)
        reuse = reuse and not self.padded
        key = (b, t0, total, dev, weights.rope[0].data_ptr())
        if reuse:
            last = getattr(weights.workspace, "last", None)
            if last is not None and last[0] == key:
                (self.keys, self.values, self.rope_prefix, self.scratch, self.per_layer,
                 self.bias) = last[1]
                return
        # caches, head-major: keys[l][b, j, c] is kv head j's key of column c, so the
        # columns written so far are a prefix and (rows, kv heads) merge into one batch dim
        self.keys = torch.zeros(layers, b, kv, total, d, device=dev)
        self.values = torch.zeros(layers, b, kv, total, d, device=dev)
        self.rope_prefix: list[Tensor] = []    # per layer (B or 1, T, hq, 3, D)
        rope_at: list[Tensor] = []             # per layer, indexed by column
        for i in range(layers):
            if self.padded:
                table = weights.rope[i][positions].transpose(0, 1)  # (total, B, hq, 3, D)
                self.rope_prefix.append(table[:t0].transpose(0, 1))
                rope_at.append(table)
            else:
                self.rope_prefix.append(weights.rope[i][:t0])
                rope_at.append(weights.rope[i])                     # (P, hq, 3, D)
        # scratch the step's products are written into, and fixed views of it
        proj = torch.empty(b, hq * d + kv * d, device=dev)
        signed = torch.empty(b, hq, 2, d, device=dev)
        rot = torch.empty(b * kv, group + 1, d, device=dev)   # grouped: q heads, then k
        att = torch.empty(b, heads, d, device=dev)
        upd = torch.empty(b, 1, weights.hidden, device=dev)
        gu = torch.empty(b, 2 * weights.intermediate, device=dev)
        inter = weights.intermediate
        # attention scores and weights of a step, (B * kv, group, columns so far) at its front
        scores = torch.empty(2, b * heads * total, device=dev)
        self.scratch: _Scratch = (
            proj, proj[:, : hq * d].view(b, hq, 1, d), proj[:, hq * d:].view(b, kv, d), signed,
            signed.view(b, hq, 2 * d), rot.view(b, hq, d), rot[:, :group],
            rot[:, group].view(b, kv, d), att.view(b * kv, group, d), att.view(b, heads * d),
            upd, upd.view(b, -1), gu, gu[:, :inter], gu[:, inter:], scores[0], scores[1])
        self.per_layer: list[_LayerOperands] = []
        for i, layer in enumerate(weights.layers):
            keys, values = self.keys[i], self.values[i]
            self.per_layer.append((
                layer.norm_in, layer.qkv, layer.out, layer.norm_post, layer.gate_up,
                layer.down, rope_at[i], keys, values,
                keys.view(b * kv, total, d).transpose(1, 2), values.view(b * kv, total, d)))
        # left padding: an additive bias keeps the steps' queries off the padding columns
        # (every generated column is real); without padding no bias is added at all
        bias = torch.zeros(b, kv, 1, total, device=dev)
        if self.padded:
            real = torch.cat([valid, valid.new_ones(b, total - t0)], 1)     # (B, total)
            bias.masked_fill_(~real[:, None, None], float("-inf"))
        self.bias = bias.view(b * kv, 1, total)
        if reuse:
            weights.workspace.last = (key, (self.keys, self.values, self.rope_prefix,
                                            self.scratch, self.per_layer, self.bias))

    def _prefill_masks(self, t: int, keep: int) -> tuple[Tensor | None, Tensor | None]:
        """Attention masks of the prefill's layers and of its last one (which runs the last
        ``keep`` columns' queries only); None where plain causal attention (or, for one
        query, attention to every column) is the same."""
        if not self.padded:
            if keep in (1, t):
                return None, None
            return None, torch.ones(keep, t, dtype=torch.bool,
                                    device=self.valid.device).tril(t - keep)
        causal = torch.ones(t, t, dtype=torch.bool, device=self.valid.device).tril()
        eye = torch.eye(t, dtype=torch.bool, device=self.valid.device)
        # a padding query sees only itself: no row is fully masked (no NaN in the cache)
        allowed = causal & (self.valid | eye)
        return allowed, allowed[:, :, t - keep:]

    def prefill(self, embeds: Tensor, keep: int = 1) -> Tensor:
        """(B, T, H) prefix embeddings -> (B, keep, H) final hidden states of the last columns.

        The last layer fills the cache with every column's keys and values but runs its
        attention output, output projection and MLP on the ``keep`` returned columns only
        (their results are all that is read; at 48 columns and keep 1 about a tenth of the
        prefill's products). The layers run as one TorchScript call (``_prefill_layers``).
        """
        w = self.w
        t = embeds.shape[1]
        keep = min(keep, t)
        mask, last_mask = self._prefill_masks(t, keep)
        return _compiled(_prefill_layers)(
            augment(embeds), self.per_layer, self.rope_prefix, self.sign, self.head_ones,
            w.norm, mask, last_mask, [w.head_dim, w.group, keep], w.eps)

    def step(self, x: Tensor) -> Tensor:
        """(B, 2, H) next input as ``[x, -x]`` -> (B, H) final hidden state."""
        t = self.t
        self.t += 1
        return _step_layers(x, t, self.per_layer, self.scratch, self.bias[:, :, :t + 1],
                            self.padded, self.sign, self.w.norm, self.head_ones,
                            [self.w.hidden, self.w.head_dim], self.w.eps)

    def greedy(self, last: Tensor, inputs: Tensor, head: Tensor,
               count: int) -> tuple[Tensor, Tensor]:
        """Greedy picks of ``count`` slots from the prefill's last hidden state ``last``.

        ``inputs`` (B, count - 1, 2, H) are the parts of the next slots' inputs that do not
        depend on the pick; ``head`` (H, V) the pickable rows' output weights, whose index v
        feeds ``table[v]`` back. Returns picks (B, count) and hidden states (B, count, H).
        """
        if not self.padded and last.device.type == "cpu" and greedy_loop.enabled():
            return self._greedy_loop(last, inputs, head, count)
        codes, hidden = _compiled(_greedy_steps)(
            last, inputs, head, self.w.inputs, self.per_layer, self.scratch, self.bias,
            self.padded, self.sign, self.w.norm, self.head_ones, self.t, count, self.w.eps)
        self.t += count - 1
        return codes, hidden

    def _greedy_loop(self, last: Tensor, inputs: Tensor, head: Tensor,
                     count: int) -> tuple[Tensor, Tensor]:
        """``greedy`` by the compiled loop (``greedy_loop``), on numpy views of the cache."""
        import numpy as np

        (rows, norms_in, qkvs, q_norms, k_norms, outs, norms_post, gate_ups, downs, norm,
         cos, sin) = self.w.loop_operands(self.keys.shape[3])
        b, h = last.shape
        codes = np.empty((b, count), np.int64)
        hidden = np.empty((b, count, h), np.float32)
        greedy_loop.run_greedy(
            np.ascontiguousarray(last.numpy()), np.ascontiguousarray(inputs[:, :, 0].numpy()),
            np.ascontiguousarray(head.numpy()), rows, norms_in, qkvs, q_norms, k_norms, outs,
            norms_post, gate_ups, downs, norm, self.keys.numpy(), self.values.numpy(), cos, sin,
            self.t, count, np.float32(self.w.eps), codes, hidden)
        self.t += count - 1
        return torch.from_numpy(codes), torch.from_numpy(hidden)


# TorchScript needs fixed-length tuples (one unpacking instruction instead of one per item)
_LayerOperands = tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor,
                       Tensor, Tensor]
_Scratch = tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor,
                 Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]


def _step_layers(x: Tensor, t: int, layers: list[_LayerOperands], scratch: _Scratch,  # noqa: PLR0917
                 bias: Tensor, padded: bool, sign: Tensor, norm: Tensor, head_ones: Tensor,
                 shapes: list[int], eps: float) -> Tensor:
    """One column through every layer (see ``IncrementalDecoder``); returns the final norm.
    ``x`` (the step's input, owned by the caller) is updated in place.

    Written out flat with prepared views and ``out=`` buffers: at this size the cost of each
    tensor call, not arithmetic, dominates a step (``narrow``/``select`` rather than
    ``[:, :end]``: TorchScript issues one slice per indexed dimension, ``:`` included). Also
    compiled by TorchScript (``_compiled``), so only TorchScript-compatible Python here.
    ``shapes``: hidden size, head size; ``bias`` is already cut to the t + 1 columns written
    so far (only added when ``padded``).
    """
    (proj, qk_in, v_in, signed, signed_flat, rot, q, k, att, att_flat, upd, upd_flat, gu,
     gate, up, scores_all, probs_all) = scratch
    h, d, end = shapes[0], shapes[1], t + 1
    norm2, head2, half = [2, h], [2 * d], d // 2
    batch, group = q.shape[0], q.shape[1]
    scores = scores_all.narrow(0, 0, batch * group * end).view(batch, group, end)
    probs = probs_all.narrow(0, 0, batch * group * end).view(batch, group, end)
    for (norm_in, qkv, out, norm_post, gate_up, down, rope, keys, values, keys_t,
         values_flat) in layers:
        torch.mm(torch.layer_norm(x, norm2, norm_in, None, eps).select(1, 0), qkv, out=proj)
        torch.mul(qk_in, sign, out=signed)                                    # [h, -h]
        qk = torch.layer_norm(signed_flat, head2, head_ones, None, eps)       # [n, -n]
        torch.linalg.vecdot(qk.unfold(-1, d, half), rope[t], dim=-2, out=rot)
        keys.select(2, t).copy_(k)
        values.select(2, t).copy_(v_in)
        if padded:
            torch.baddbmm(bias, q, keys_t.narrow(2, 0, end), out=scores)
        else:
            torch.bmm(q, keys_t.narrow(2, 0, end), out=scores)
        torch.softmax(scores, -1, out=probs)
        torch.bmm(probs, values_flat.narrow(1, 0, end), out=att)
        torch.mm(att_flat, out, out=upd_flat)
        x.addcmul_(upd, sign)
        torch.mm(torch.layer_norm(x, norm2, norm_post, None, eps).select(1, 0), gate_up,
                 out=gu)
        torch.mm(nn.functional.silu(gate, inplace=True).mul_(up), down, out=upd_flat)
        x.addcmul_(upd, sign)
    return torch.layer_norm(x, norm2, norm, None, eps).select(1, 0)


def _prefill_layers(x: Tensor, layers: list[_LayerOperands], rope_prefix: list[Tensor],  # noqa: PLR0917
                    sign: Tensor, head_ones: Tensor, norm: Tensor, mask: Tensor | None,
                    last_mask: Tensor | None, shapes: list[int], eps: float) -> Tensor:
    """``IncrementalDecoder.prefill``'s layers: ``x`` (B, T, 2, H) -> (B, keep, H).

    ``mask``: the layers' attention mask (None: causal); ``last_mask``: the last layer's,
    whose queries are the last ``keep`` columns only (None: causal, or all columns for
    one query). ``shapes``: head size, query heads per kv head, keep. TorchScript-compatible
    (``_compiled``): ~30 tensor calls a layer.
    """
    b, t, h = x.shape[0], x.shape[1], x.shape[3]
    d, group, keep = shapes[0], shapes[1], shapes[2]
    norm2, head2, half = [2, h], [2 * d], d // 2
    x = x.reshape(b * t, 2, h)
    rows = t                                                    # columns x holds
    count = len(layers)
    for i in range(count):
        (norm_in, qkv, out, norm_post, gate_up, down, _rope, keys_all, values_all, _keys_t,
         _values_flat) = layers[i]
        kv = keys_all.shape[1]
        heads, inter = kv * group, gate_up.shape[1] // 2
        hq = heads + kv
        proj = torch.mm(torch.layer_norm(x, norm2, norm_in, None, eps).select(1, 0),
                        qkv).view(b, t, -1)
        raw = proj.narrow(2, 0, hq * d).view(b, t, hq, 1, d)
        qk = torch.cat([raw, raw.neg()], 3).view(b, t, hq, 2 * d)              # [h, -h]
        qk = torch.layer_norm(qk, head2, head_ones, None, eps)
        # the step's weighted sum of windows, as two elementwise products here (the
        # reduction over the window dimension is the slow part at 48 columns)
        table = rope_prefix[i]
        rot = torch.mul(qk.narrow(3, 0, d), table.select(-2, 0)).addcmul_(
            qk.narrow(3, half, d), table.select(-2, 1)).view(b, t, kv, group + 1, d)
        keys, values = keys_all.narrow(2, 0, t), values_all.narrow(2, 0, t)  # (B, kv, T, D)
        keys.copy_(rot.select(3, group).transpose(1, 2))
        values.copy_(proj.narrow(2, hq * d, kv * d).view(b, t, kv, d).transpose(1, 2))
        attn_mask = mask
        if i == count - 1 and keep < t:
            rows = keep
            x = x.view(b, t, 2, h).narrow(1, t - keep, keep).reshape(b * keep, 2, h)
            attn_mask = last_mask
        q = rot.narrow(1, t - rows, rows).narrow(3, 0, group).reshape(b, rows, heads, d)
        att = nn.functional.scaled_dot_product_attention(
            q.transpose(1, 2), keys, values, attn_mask=attn_mask,
            is_causal=attn_mask is None and rows == t, scale=1.0, enable_gqa=True)
        att = att.transpose(1, 2).reshape(b * rows, heads * d)
        x = torch.addcmul(x, torch.mm(att, out).unsqueeze(1), sign)
        gu = torch.mm(torch.layer_norm(x, norm2, norm_post, None, eps).select(1, 0), gate_up)
        act = nn.functional.silu(gu.narrow(1, 0, inter), inplace=True).mul_(
            gu.narrow(1, inter, inter))
        x = torch.addcmul(x, torch.mm(act, down).unsqueeze(1), sign)
    last = x.view(b, rows, 2, h).narrow(1, rows - keep, keep)
    return torch.layer_norm(last, norm2, norm, None, eps).select(2, 0)


def _greedy_steps(last: Tensor, inputs: Tensor, head: Tensor, table: Tensor,  # noqa: PLR0917
                  layers: list[_LayerOperands], scratch: _Scratch, bias: Tensor,
                  padded: bool, sign: Tensor, norm: Tensor, head_ones: Tensor, t0: int,
                  count: int, eps: float) -> tuple[Tensor, Tensor]:
    """The greedy loop of ``IncrementalDecoder.greedy`` (one call for all steps)."""
    codes: list[Tensor] = []
    hidden: list[Tensor] = [last]
    shapes = [last.shape[-1], scratch[5].shape[-1]]
    for j in range(count):
        code = torch.mm(last, head).argmax(-1)
        codes.append(code)
        if j == count - 1:
            break
        x = table.index_select(0, code).add_(inputs.select(1, j))
        last = _step_layers(x, t0 + j, layers, scratch, bias.narrow(2, 0, t0 + j + 1), padded,
                            sign, norm, head_ones, shapes, eps)
        hidden.append(last)
    return torch.stack(codes, 1), torch.stack(hidden, 1)


_SCRIPTED: dict[str, Callable[..., Any]] = {}
_STATIC = threading.local()


def _compiled(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn`` compiled by TorchScript once per process (~0.1 s), run by TorchScript's static
    runtime where it loads, else by its interpreter, else as is.

    Why: the greedy loop issues ~100 small tensor calls per step, the prefill ~30 per layer;
    run by TorchScript's interpreter they skip Python's argument handling (~15-20% of a
    step here, measured), and the static runtime (TorchScript's executor for inference
    graphs) spends less again per call (~2-4% of the loop, measured). Same kernels, same
    results. A static runtime instance holds one run's state, so each thread gets its own.
    TorchScript is deprecated upstream: where it is missing or fails, the plain function
    runs (``UNIHM_NO_TORCHSCRIPT=1`` asks for that, ``UNIHM_NO_STATIC_RUNTIME=1`` for the
    interpreter).
    """
    name = fn.__name__
    runners = getattr(_STATIC, "runners", None)
    if runners is None:
        runners = _STATIC.runners = {}
    runner = runners.get(name)
    if runner is not None:
        return runner
    if name not in _SCRIPTED:
        scripted: Callable[..., Any] = fn
        if os.environ.get("UNIHM_NO_TORCHSCRIPT", "") in ("", "0"):
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    scripted = torch.jit.script(fn)
            except Exception:  # noqa: BLE001 - any scripting failure: run the plain function
                scripted = fn
        _SCRIPTED[name] = scripted
    runner = _SCRIPTED[name]
    graph = getattr(runner, "graph", None)
    if graph is not None and os.environ.get("UNIHM_NO_STATIC_RUNTIME", "") in ("", "0"):
        try:
            graph = graph.copy()
            torch._C._jit_pass_inline(graph)                   # calls of other functions
            runner = torch._C._jit_to_static_module(graph)
        except Exception:  # noqa: BLE001 - no static runtime here: the interpreter runs it
            runner = _SCRIPTED[name]
    runners[name] = runner
    return runner
