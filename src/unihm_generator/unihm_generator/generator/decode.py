"""Incremental decoding of the Qwen3 decoder with a preallocated KV cache.

Why this exists: the tiny generator's step at ~100 positions costs a few microseconds of
arithmetic per operation but transformers' forward issues ~30 small operations per layer
through several Python module layers, builds a causal mask and position embeddings per call
and grows a ``DynamicCache`` by concatenation. Profiled, that overhead made a cached step
(~2 ms) nearly as slow as re-running the whole sequence. This module runs the same
arithmetic (same weights, same RMSNorm / RoPE / GQA attention semantics) with every
per-generation constant built once:

* the key/value cache is allocated for the whole generation and written in place;
* RoPE cos/sin tables for every position of every row are computed once, with the q/k norm
  weights and the rotate-half sign folded in (``rope(w * n) = n * (w cos) +
  rot(n) * (swap(w) sin)``), so RoPE is one multiply and one sum per step;
* q, k, v and the rotated copies of q and k come out of one matrix product;
* every RMSNorm is one ``layer_norm`` call: the residual stream is kept as ``[x, -x]``, whose
  mean is zero and whose variance is ``mean(x^2)``, so ``layer_norm([x, -x], eps)`` starts
  with ``x * rsqrt(mean(x^2) + eps)`` (the q/k head norms use ``[h, -swap(h)]`` the same
  way); the projections that write the residual stream carry ``[W, -W]``.

Outputs agree with transformers' forward up to float rounding; the tests compare generated
tokens with the full re-run. Only float32 weights without autocast and the plain Qwen3 layout
(no attention bias, no sliding window, default RoPE) qualify (``supported``); anything else
uses transformers' own cache.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def supported(lm: nn.Module) -> bool:
    """Whether ``lm`` (a ``Qwen3ForCausalLM``) can be decoded by ``IncrementalDecoder``."""
    cfg = lm.config
    weight = lm.get_input_embeddings().weight
    rope = getattr(cfg, "rope_scaling", None) or {}
    rope_type = rope.get("rope_type", rope.get("type", "default")) if rope else "default"
    layer_types = getattr(cfg, "layer_types", None) or ["full_attention"]
    return (weight.dtype == torch.float32 and weight.device.type == "cpu"
            and not torch.is_autocast_enabled("cpu")
            and not getattr(cfg, "attention_bias", False)
            and not getattr(cfg, "use_sliding_window", False)
            and all(t == "full_attention" for t in layer_types)
            and rope_type == "default" and cfg.hidden_act == "silu"
            and getattr(cfg, "attention_dropout", 0.0) == 0.0)


def _swap(w: Tensor) -> Tensor:
    """Swap the two halves of the last dimension (rotate-half without the sign)."""
    half = w.shape[-1] // 2
    return torch.cat([w[..., half:], w[..., :half]], -1)


@dataclass
class _Layer:
    norm_in: Tensor     # (2H,) input RMSNorm weight, twice
    qkv: Tensor         # (H, (heads + 2 kv) * D): q, k, v
    q_norm: Tensor      # (D,)
    k_norm: Tensor      # (D,)
    out: Tensor         # (heads * D, H)
    norm_post: Tensor   # (2H,)
    gate_up: Tensor     # (H, 2I)
    down: Tensor        # (I, H)


class FlatWeights:
    """The decoder's weights laid out for ``IncrementalDecoder`` (built from the live model)."""

    def __init__(self, lm: nn.Module) -> None:
        cfg = lm.config
        self.hidden = cfg.hidden_size
        self.heads, self.kv_heads = cfg.num_attention_heads, cfg.num_key_value_heads
        self.head_dim = getattr(cfg, "head_dim", None) or self.hidden // self.heads
        self.eps = float(cfg.rms_norm_eps)
        d = self.head_dim
        self.layers: list[_Layer] = []
        for layer in lm.model.layers:
            att, mlp = layer.self_attn, layer.mlp
            qkv = torch.cat([att.q_proj.weight, att.k_proj.weight, att.v_proj.weight], 0)
            self.layers.append(_Layer(
                norm_in=layer.input_layernorm.weight.repeat(2),
                qkv=qkv.t().contiguous(),
                q_norm=att.q_norm.weight, k_norm=att.k_norm.weight,
                out=att.o_proj.weight.t().contiguous(),
                norm_post=layer.post_attention_layernorm.weight.repeat(2),
                gate_up=torch.cat([mlp.gate_proj.weight, mlp.up_proj.weight], 0).t().contiguous(),
                down=mlp.down_proj.weight.t().contiguous()))
        self.norm = lm.model.norm.weight.repeat(2)

    @staticmethod
    def key(lm: nn.Module) -> tuple[tuple[int, int], ...]:
        """Identity and in-place version of every parameter: changes when training edits them."""
        return tuple((p.data_ptr(), p._version) for p in lm.parameters())


def augment(x: Tensor) -> Tensor:
    """``x -> [x, -x]`` along the last dimension (the residual stream's layout)."""
    return torch.cat([x, -x], -1)


class IncrementalDecoder:
    """Prefill once, then one position per ``step`` for every row of a left-padded batch.

    ``mask`` (B, T) marks the prefix's real positions (left padding is 0); ``positions``
    (B, T + steps) are the RoPE positions of every column the generation will reach.
    """

    def __init__(self, lm: nn.Module, weights: FlatWeights, mask: Tensor,
                 positions: Tensor) -> None:
        self.w = weights
        b, t0 = mask.shape
        total = positions.shape[1]
        d, heads, kv = weights.head_dim, weights.heads, weights.kv_heads
        self.batch, self.t = b, t0
        dev = mask.device
        # RoPE tables with the q/k norm weights and the rotate-half sign folded in. The head
        # norm runs on [h, -h] = [h1, h2, -h1, -h2] and yields [n, -n]; its slice [D/2, 3D/2)
        # is [n2, -n1], so rope(w * n) = n * (w cos) + [n2, -n1] * (-swap(w) sin).
        probe = torch.zeros(1, dtype=torch.float32, device=dev)
        cos, sin = lm.model.rotary_emb(probe, positions)          # (B, total, D)
        self.cos: list[Tensor] = []
        self.sin: list[Tensor] = []
        for layer in weights.layers:
            norms = torch.cat([layer.q_norm.expand(heads, d), layer.k_norm.expand(kv, d)])
            self.cos.append((cos[:, :, None] * norms).contiguous())        # (B, total, hq, D)
            self.sin.append((sin[:, :, None] * -_swap(norms)).contiguous())
        self.sign = torch.tensor([[1.0], [-1.0]], device=dev)
        self.cache = torch.zeros(len(weights.layers), 2, b, kv, total, d, device=dev)
        valid = mask.bool()
        self.padded = not bool(valid.all())
        # keys a step may attend to: every real prefix column and every generated column
        self.keys = torch.cat([valid, valid.new_ones(b, total - t0)], 1)[:, None, None]

    def _attend_prefill(self, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        t = q.shape[2]
        if not self.padded:
            return F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
        causal = torch.ones(t, t, dtype=torch.bool, device=q.device).tril()
        eye = torch.eye(t, dtype=torch.bool, device=q.device)
        # a padding query sees only itself: no row is fully masked (no NaN in the cache)
        allowed = causal & (self.keys[..., :t] | eye)
        return F.scaled_dot_product_attention(q, k, v, attn_mask=allowed, enable_gqa=True)

    def _head_norm_rope(self, proj: Tensor, i: int, cols: slice | int) -> Tensor:
        """q/k head RMSNorm and RoPE of (..., hq * D) projections -> (..., hq, D)."""
        w = self.w
        d, hq = w.head_dim, w.heads + w.kv_heads
        lead = proj.shape[:-1]
        qk = proj[..., : hq * d].view(*lead, hq, 1, d) * self.sign          # [h, -h]
        qk = F.layer_norm(qk.view(*lead, hq, 2 * d), (2 * d,), None, None, w.eps)
        return torch.addcmul(qk[..., :d] * self.cos[i][:, cols], qk[..., d // 2: d // 2 + d],
                             self.sin[i][:, cols])

    def _residual(self, x: Tensor, update: Tensor) -> Tensor:
        """[x, -x] + [u, -u] in one operation."""
        rows, h = update.shape
        return torch.addcmul(x.view(rows, 2, h), update[:, None], self.sign).view(rows, 2 * h)

    def prefill(self, embeds: Tensor) -> Tensor:
        """(B, T, H) prefix embeddings -> (B, H) final hidden state of the last column."""
        w = self.w
        b, t, h = embeds.shape
        d, heads, kv = w.head_dim, w.heads, w.kv_heads
        hq = heads + kv
        x = augment(embeds).view(b * t, 2 * h)
        for i, layer in enumerate(w.layers):
            y = F.layer_norm(x, (2 * h,), layer.norm_in, None, w.eps)[:, :h]
            proj = torch.mm(y, layer.qkv).view(b, t, -1)
            rot = self._head_norm_rope(proj, i, slice(0, t))                # (B, T, hq, D)
            k_cache, v_cache = self.cache[i, 0], self.cache[i, 1]
            k_cache[:, :, :t] = rot[:, :, heads:].transpose(1, 2)
            v_cache[:, :, :t] = proj[:, :, hq * d:].view(b, t, kv, d).transpose(1, 2)
            att = self._attend_prefill(rot[:, :, :heads].transpose(1, 2),
                                       k_cache[:, :, :t], v_cache[:, :, :t])
            att = att.transpose(1, 2).reshape(b * t, heads * d)
            x = self._residual(x, torch.mm(att, layer.out))
            y = F.layer_norm(x, (2 * h,), layer.norm_post, None, w.eps)[:, :h]
            gate, up = torch.mm(y, layer.gate_up).chunk(2, -1)
            x = self._residual(x, torch.mm(F.silu(gate).mul_(up), layer.down))
        last = x.view(b, t, 2 * h)[:, -1]
        return F.layer_norm(last, (2 * h,), w.norm, None, w.eps)[:, :h]

    def step(self, x: Tensor) -> Tensor:
        """(B, 2H) next input in ``[x, -x]`` layout -> (B, H) final hidden state."""
        w = self.w
        b, t = self.batch, self.t
        h, d, heads, kv = w.hidden, w.head_dim, w.heads, w.kv_heads
        hq = heads + kv
        end = t + 1
        keys = self.keys[..., :end] if self.padded else None
        for i, layer in enumerate(w.layers):
            y = F.layer_norm(x, (2 * h,), layer.norm_in, None, w.eps)[:, :h]
            proj = torch.mm(y, layer.qkv)
            rot = self._head_norm_rope(proj, i, t)                          # (B, hq, D)
            cache = self.cache[i]
            cache[0, :, :, t] = rot[:, heads:]
            cache[1, :, :, t] = proj[:, hq * d:].view(b, kv, d)
            # one query per row: the query heads sharing a key head are that head's queries
            att = F.scaled_dot_product_attention(rot[:, :heads].view(b, kv, heads // kv, d),
                                                 cache[0, :, :, :end], cache[1, :, :, :end],
                                                 attn_mask=keys)
            x = self._residual(x, torch.mm(att.view(b, heads * d), layer.out))
            y = F.layer_norm(x, (2 * h,), layer.norm_post, None, w.eps)[:, :h]
            gate, up = torch.mm(y, layer.gate_up).chunk(2, -1)
            x = self._residual(x, torch.mm(F.silu(gate).mul_(up), layer.down))
        self.t = end
        return F.layer_norm(x, (2 * h,), w.norm, None, w.eps)[:, :h]
