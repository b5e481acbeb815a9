"""The language-conditioned generator: a Qwen3 causal LM that writes hand tokens.

Sequence layout (one request; docs/generator.md draws it)::

    [instruction: Qwen3 ids]  [<|obj|> x K]  [<|traj|> x N]  [<|init|>] [h_init]
    [slot 0 ... slot N-1]  [slot N]

* ``<|obj|>`` rows carry the PointNet object embedding (K vectors, paper C.2) added to the
  structure token's embedding; ``<|traj|>`` row i carries the trajectory encoder's feature of
  chunk i of the target trajectory (the two-layer MLP of C.3 runs on every target step; the
  features of the ``chunk`` steps a hand token covers are averaged).
* ``<|init|>`` carries the initial wrist pose in the object's frame (when given); ``h_init`` is
  the hand tokenizer's token of the initial hand pose (one frame -> one token).
* slot j's input is the previous hand token (``<|motion|>`` for slot 0; ``<|hand_mask|>`` where
  the masking curriculum hides it) plus the target feature of chunk j, so that the step being
  generated is aligned with the part of the target trajectory it must follow. Slot j predicts
  hand token j (slot N predicts ``<|motion_end|>``) and, through the wrist head, the wrist pose
  in the object's frame of the ``chunk`` frames of chunk j.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from unihm_generator.generator.config import GeneratorConfig, GeneratorError
from unihm_generator.generator.decode import FlatWeights, IncrementalDecoder, augment, supported
from unihm_generator.tokenizer.seams import smooth_seams


@dataclass
class Request:
    """One generation request in model units (built by ``data.make_request``)."""

    text_rows: list[int]
    points: np.ndarray          # (num_points, 3) object frame, centred
    traj: np.ndarray            # (T, traj_features) per target step
    init_token: int             # hand tokenizer code of the initial pose
    init_wrist: np.ndarray      # (10,): 9D wrist-in-object + present flag
    num_tokens: int             # N = ceil(T / chunk)


class PointNet(nn.Module):
    """Shared per-point MLP, max pooling, then K object embeddings (paper C.2, eq. C2)."""

    def __init__(self, widths: Sequence[int], num_tokens: int, hidden: int) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        prev = 3
        for w in widths:
            # in place: the linear's output is not kept for its backward pass, and a
            # 512 x 256 activation is not allocated again (same values)
            layers += [nn.Linear(prev, w), nn.ReLU(inplace=True)]
            prev = w
        self.point_mlp = nn.Sequential(*layers)
        self.out = nn.Linear(prev, num_tokens * hidden)
        self.num_tokens, self.hidden = num_tokens, hidden

    def forward(self, points: Tensor) -> Tensor:  # (B, P, 3) -> (B, K, H)
        # amax: the values of max(dim).values without computing the argmax (~12x faster at
        # 512 x 256); tied points (duplicates) share the gradient instead of one taking it
        feat = self.point_mlp(points).amax(dim=1)
        return self.out(feat).view(-1, self.num_tokens, self.hidden)


class TrajectoryEncoder(nn.Module):
    """z(t) = s2(W2 s1(W1 p(t) + b1) + b2), hidden 512 (paper C.3, eq. C3)."""

    def __init__(self, features: int, hidden: int, out: int) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(features, hidden), nn.SiLU(),
                                 nn.Linear(hidden, out), nn.SiLU())

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


def build_lm(config: GeneratorConfig) -> nn.Module:
    from transformers import Qwen3Config, Qwen3ForCausalLM

    if config.base_model:
        lm = Qwen3ForCausalLM.from_pretrained(config.base_model, dtype=torch.float32)
        lm.resize_token_embeddings(config.vocab_size)
        return lm
    qcfg = Qwen3Config(vocab_size=config.vocab_size, hidden_size=config.hidden_size,
                       intermediate_size=config.intermediate_size,
                       num_hidden_layers=config.num_layers,
                       num_attention_heads=config.num_heads,
                       num_key_value_heads=config.num_kv_heads, head_dim=config.head_dim,
                       max_position_embeddings=config.max_positions,
                       rope_theta=config.rope_theta, tie_word_embeddings=True,
                       pad_token_id=config.structure_id("<|pad|>"),
                       bos_token_id=None, eos_token_id=config.structure_id("<|motion_end|>"))
    qcfg._attn_implementation = "sdpa"
    return Qwen3ForCausalLM(qcfg)


class HandGenerator(nn.Module):
    def __init__(self, config: GeneratorConfig) -> None:
        super().__init__()
        self.config = config
        self.lm = build_lm(config)
        h = config.hidden_size
        self.pointnet = PointNet(config.pointnet_widths, config.num_object_tokens, h)
        self.traj_encoder = TrajectoryEncoder(config.traj_features, config.traj_hidden, h)
        self.init_wrist = nn.Linear(10, h)
        self.wrist_head = nn.Sequential(nn.Linear(h, config.wrist_hidden), nn.GELU(),
                                        nn.Linear(config.wrist_hidden, config.chunk * 9))

    # ------------------------------------------------------------------------ embeddings
    @property
    def embed(self) -> nn.Embedding:
        return self.lm.get_input_embeddings()

    def _ids(self, ids: Sequence[int] | Tensor, table: Tensor | None = None) -> Tensor:
        """Input embeddings of ``ids`` (``table``: the embedding weight, when already fetched).

        With gradients on, the embedding module (its padding row gets no gradient). Without,
        the same rows by plain indexing: the module call and the fetch of the weight through
        the module tree cost ~20 us, several times per request; one id gives a read-only view
        of its row.
        """
        if torch.is_grad_enabled():
            dev = self.embed.weight.device
            return self.embed(torch.as_tensor(ids, dtype=torch.long, device=dev))
        table = self.embed.weight if table is None else table
        if isinstance(ids, Tensor):
            return nn.functional.embedding(ids.to(table.device), table)
        if len(ids) == 1 and 0 <= int(ids[0]) < table.shape[0]:
            return table.narrow(0, int(ids[0]), 1)
        return table.index_select(0, torch.tensor(list(ids), dtype=torch.long,
                                                  device=table.device))

    def _chunk_features(self, traj: Tensor, n: int) -> Tensor:
        """(T, F) target steps -> (n, H): MLP per step, averaged over each token's chunk."""
        c = self.config.chunk
        z = self.traj_encoder(traj)
        pad = n * c - z.shape[0]
        if pad > 0:
            z = torch.cat([z, z[-1:].expand(pad, -1)], 0)
        return z[: n * c].view(n, c, -1).mean(1)

    def prefix(self, requests: Sequence[Request]) -> tuple[list[Tensor], list[Tensor]]:
        """Per request: the prefix embeddings (up to the init token) and the N chunk features."""
        cfg = self.config
        table = self.embed.weight
        dev = table.device
        pts = torch.from_numpy(np.stack([r.points for r in requests]).astype(
            np.float32, copy=False)).to(dev)
        obj = self.pointnet(pts) + self._ids([cfg.structure_id("<|obj|>")], table)
        init_w = self.init_wrist(torch.from_numpy(np.stack(
            [r.init_wrist for r in requests]).astype(np.float32, copy=False)).to(dev))
        prefixes, chunks = [], []
        for b, r in enumerate(requests):
            feats = self._chunk_features(torch.as_tensor(r.traj, dtype=torch.float32,
                                                         device=dev), r.num_tokens)
            parts = [self._ids(r.text_rows, table) if r.text_rows else obj[b, :0], obj[b],
                     feats + self._ids([cfg.structure_id("<|traj|>")], table),
                     self._ids([cfg.structure_id("<|init|>")], table) + init_w[b:b + 1],
                     self._ids([cfg.hand_offset + int(r.init_token)], table)]
            prefixes.append(torch.cat(parts, 0))
            chunks.append(feats)
        return prefixes, chunks

    def _pad_left(self, seqs: Sequence[Tensor],
                  table: Tensor | None = None) -> tuple[Tensor, Tensor]:
        width = max(s.shape[0] for s in seqs)
        if all(s.shape[0] == width for s in seqs):      # nothing to pad (one request, say)
            return torch.stack(seqs), torch.ones(len(seqs), width, dtype=torch.long,
                                                 device=seqs[0].device)
        pad = self._ids([self.config.structure_id("<|pad|>")], table)
        embeds, mask = [], torch.zeros(len(seqs), width, dtype=torch.long,
                                       device=pad.device)
        for b, s in enumerate(seqs):
            n = width - s.shape[0]
            embeds.append(torch.cat([pad.expand(n, -1), s], 0))
            mask[b, n:] = 1
        return torch.stack(embeds), mask

    @staticmethod
    def _positions(mask: Tensor) -> Tensor:
        return (mask.cumsum(1) - 1).clamp(min=0)

    def _run(self, embeds: Tensor, mask: Tensor, positions: Tensor, cache=None):
        out = self.lm.model(inputs_embeds=embeds, attention_mask=mask, position_ids=positions,
                            past_key_values=cache, use_cache=cache is not None)
        return out.last_hidden_state, out.past_key_values

    def logits(self, hidden: Tensor) -> Tensor:
        return self.lm.lm_head(hidden)

    def wrist(self, hidden: Tensor) -> Tensor:
        """(..., H) -> (..., chunk, 9): wrist position (dm) and 6D rotation, object frame."""
        return self.wrist_head(hidden).view(*hidden.shape[:-1], self.config.chunk, 9)

    # -------------------------------------------------------------------------- training
    def loss(self, requests: Sequence[Request], tokens: Sequence[np.ndarray],  # noqa: PLR0917
             wrist_targets: Sequence[np.ndarray], frame_masks: Sequence[np.ndarray],
             mask_ratio: float, rng: torch.Generator | None = None) -> dict[str, Tensor]:
        """Teacher-forced loss: CE on hand tokens + end token, MSE on the wrist in object frame.

        Inputs of slots 1..N (the previous ground-truth tokens) are replaced by the learnable
        ``<|hand_mask|>`` token with probability ``mask_ratio`` (paper C.4, eq. C4).
        """
        cfg = self.config
        dev = self.embed.weight.device
        prefixes, chunks = self.prefix(requests)
        seqs, slot_counts, targets = [], [], []
        for b, r in enumerate(requests):
            tok = torch.as_tensor(tokens[b], dtype=torch.long, device=dev)
            n = r.num_tokens
            inputs = torch.cat([torch.tensor([cfg.structure_id("<|motion|>")], device=dev),
                                tok + cfg.hand_offset])
            if mask_ratio > 0:
                hide = torch.rand(n + 1, generator=rng).to(dev) < mask_ratio
                hide[0] = False  # <|motion|> opens the motion; hand tokens 0..N-1 may be hidden
                inputs = torch.where(hide, torch.full_like(inputs, cfg.structure_id(
                    "<|hand_mask|>")), inputs)
            slot = self._ids(inputs)
            slot = slot + torch.cat([chunks[b], slot.new_zeros(1, slot.shape[1])], 0)
            seqs.append(torch.cat([prefixes[b], slot], 0))
            slot_counts.append(n + 1)
            targets.append(torch.cat([tok + cfg.hand_offset, torch.tensor(
                [cfg.structure_id("<|motion_end|>")], device=dev)]))
        embeds, mask = self._pad_left(seqs)
        hidden, _ = self._run(embeds, mask, self._positions(mask))
        width = embeds.shape[1]
        ce, mse, count_w = [], [], 0.0
        for b, k in enumerate(slot_counts):
            h = hidden[b, width - k:]
            ce.append(nn.functional.cross_entropy(self.logits(h), targets[b], reduction="sum"))
            pred = self.wrist(h[:-1]).reshape(-1, 9)
            tgt = torch.as_tensor(wrist_targets[b], dtype=torch.float32, device=dev)
            fm = torch.as_tensor(frame_masks[b], dtype=torch.float32, device=dev)[:, None]
            mse.append(((pred[: tgt.shape[0]] - tgt) ** 2 * fm).sum())
            count_w += float(fm.sum()) * 9
        n_tok = sum(slot_counts)
        ce_loss = torch.stack(ce).sum() / n_tok
        wrist_loss = torch.stack(mse).sum() / max(count_w, 1.0)
        return {"loss": ce_loss + cfg.wrist_weight * wrist_loss, "ce": ce_loss,
                "wrist": wrist_loss}

    # ------------------------------------------------------------------------ generation
    def _allowed(self, logits: Tensor, step: int, num_tokens: Tensor) -> Tensor:
        """Logits restricted to hand tokens (and the end token once every token is written)."""
        cfg = self.config
        out = torch.full_like(logits, float("-inf"))
        out[:, cfg.hand_offset:] = logits[:, cfg.hand_offset:]
        end = cfg.structure_id("<|motion_end|>")
        done = step >= num_tokens
        out[:, end] = torch.where(done, logits[:, end], torch.full_like(logits[:, end],
                                                                        float("-inf")))
        return out

    @staticmethod
    def _pick(logits: Tensor, *, greedy: bool, temperature: float, top_k: int, top_p: float,
              rng: torch.Generator | None) -> Tensor:
        if greedy or temperature <= 0:
            return logits.argmax(-1)
        logits = logits / temperature
        if top_k > 0:
            kth = logits.topk(min(top_k, logits.shape[-1]), dim=-1).values[:, -1:]
            logits = logits.masked_fill(logits < kth, float("-inf"))
        if 0 < top_p < 1:
            srt, idx = logits.sort(-1, descending=True)
            probs = srt.softmax(-1)
            drop = probs.cumsum(-1) - probs > top_p
            srt = srt.masked_fill(drop, float("-inf"))
            logits = torch.full_like(logits, float("-inf")).scatter(-1, idx, srt)
        probs = logits.softmax(-1)
        return torch.multinomial(probs, 1, generator=rng).squeeze(-1)

    def _flat_weights(self) -> FlatWeights:
        """The decoder's rearranged weights, rebuilt only after the parameters changed."""
        first = self.config.hand_offset
        flat = self.__dict__.get("_flat")
        if flat is None or not flat.current(self.lm, first):
            flat = FlatWeights(self.lm, first)
            self.__dict__["_flat"] = flat
        return flat

    def _generate_incremental(self, embeds: Tensor, mask: Tensor, positions: Tensor,  # noqa: PLR0917
                              feats: Tensor, num: Tensor, n_max: int, feed_mask: bool,
                              greedy: bool, temperature: float, top_k: int, top_p: float,
                              rng: torch.Generator | None) -> tuple[Tensor, Tensor]:
        """The cached path on ``IncrementalDecoder``: codes (B, N), wrists (B, N, chunk, 9).

        Same choices as the loop in ``generate``; what differs is that what never changes
        within a generation is prepared once (cache, RoPE tables, hand-token rows) and the
        wrist head runs once on all slots at the end. Greedy picks take the argmax over the
        hand-token logits only: the end token is allowed only past a row's last token, whose
        choice is discarded. With ``feed_mask`` no input depends on a pick, so the whole
        sequence runs in one pass.
        """
        cfg = self.config
        b_size = embeds.shape[0]
        steps = torch.arange(1, n_max, device=positions.device)
        every = torch.cat([positions, positions[:, -1:] + steps], 1)
        flat = self._flat_weights()
        head = flat.head                                           # (H, codebook)
        sample = not (greedy or temperature <= 0)

        def pick(hidden: Tensor, j: int) -> Tensor:
            logits = self._allowed(self.logits(hidden).float(), j, num)
            tok = self._pick(logits, greedy=False, temperature=temperature, top_k=top_k,
                             top_p=top_p, rng=rng)
            return (tok - cfg.hand_offset).clamp(0, cfg.codebook_size - 1)

        if feed_mask:
            # no slot's input depends on a generated token: one pass over the whole sequence
            # gives every slot's hidden state (the picks below are made in the same order)
            mask_row = self._ids([cfg.structure_id("<|hand_mask|>")])
            dec = IncrementalDecoder(self.lm, flat, torch.cat(
                [mask, mask.new_ones(b_size, n_max - 1)], 1), every)
            hidden = dec.prefill(torch.cat([embeds, feats[:, 1:] + mask_row], 1), n_max)
            if sample:
                codes = torch.stack([pick(hidden[:, j], j) for j in range(n_max)], 1)
            else:
                codes = torch.matmul(hidden, head).argmax(-1)
        else:
            # the decoder is done with when this returns: the next request may reuse its buffers
            dec = IncrementalDecoder(self.lm, flat, mask, every, reuse=True)
            nxt = augment(feats[:, 1:])                            # (B, N - 1, 2, H)
            last = dec.prefill(embeds)[:, 0]
            if not sample:
                codes, hidden = dec.greedy(last, nxt, head, n_max)
            else:
                hand_in = flat.inputs                              # (codebook, 2, H)
                hiddens, picked = [last], []
                for j in range(n_max):
                    picked.append(pick(last, j))
                    if j == n_max - 1:
                        break
                    last = dec.step(hand_in.index_select(0, picked[-1]).add_(nxt[:, j]))
                    hiddens.append(last)
                codes, hidden = torch.stack(picked, 1), torch.stack(hiddens, 1)
        wrists = self.wrist(hidden)
        return codes, wrists.view(b_size, n_max, cfg.chunk, 9)

    @torch.no_grad()
    def generate(self, requests: Sequence[Request], *, use_cache: bool = True,
                 greedy: bool = True, temperature: float = 1.0, top_k: int = 0,
                 top_p: float = 1.0, seed: int | None = None,
                 feed_mask: bool = False) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """Hand token codes (N,) and wrist predictions (N * chunk, 9) for each request.

        ``use_cache=False`` re-runs the whole sequence at every step (the reference the
        KV-cache path is tested and benchmarked against). ``feed_mask`` feeds the mask token
        instead of the sampled token (the input the last, fully masked epochs trained on).
        """
        if not requests:
            return [], []
        cfg = self.config
        table = self.embed.weight
        dev = table.device
        rng = None
        if seed is not None:
            rng = torch.Generator(device=dev)
            rng.manual_seed(int(seed))
        prefixes, chunks = self.prefix(requests)
        b_size = len(requests)
        num = torch.tensor([r.num_tokens for r in requests], device=dev)
        n_max = int(num.max())
        h = cfg.hidden_size
        feats = torch.zeros(b_size, n_max, h, device=dev)
        for b, c in enumerate(chunks):
            feats[b, : c.shape[0]] = c
        first = self._ids([cfg.structure_id("<|motion|>")], table)
        seqs = [torch.cat([p, first + feats[b, :1]], 0) for b, p in enumerate(prefixes)]
        embeds, mask = self._pad_left(seqs, table)
        positions = self._positions(mask)
        if use_cache and supported(self.lm):
            with torch.inference_mode():
                codes, wrists = self._generate_incremental(
                    embeds, mask, positions, feats, num, n_max, feed_mask, greedy,
                    temperature, top_k, top_p, rng)
            return self._split(requests, codes, wrists)
        cache = None
        if use_cache:
            from transformers import DynamicCache

            cache = DynamicCache(config=self.lm.config)
        hidden, cache = self._run(embeds, mask, positions, cache)
        codes = torch.zeros(b_size, n_max, dtype=torch.long, device=dev)
        wrists = torch.zeros(b_size, n_max, cfg.chunk, 9, device=dev)
        mask_row = self._ids([cfg.structure_id("<|hand_mask|>")])
        for j in range(n_max):
            last = hidden[:, -1]
            wrists[:, j] = self.wrist(last)
            logits = self._allowed(self.logits(last).float(), j, num)
            tok = self._pick(logits, greedy=greedy, temperature=temperature, top_k=top_k,
                             top_p=top_p, rng=rng)
            codes[:, j] = (tok - cfg.hand_offset).clamp(0, cfg.codebook_size - 1)
            if j == n_max - 1:
                break
            step = mask_row.expand(b_size, -1) if feed_mask else self._ids(tok)
            step = (step + feats[:, j + 1])[:, None]
            mask = torch.cat([mask, mask.new_ones(b_size, 1)], 1)
            positions = torch.cat([positions, positions[:, -1:] + 1], 1)
            if use_cache:
                hidden, cache = self._run(step, mask, positions[:, -1:], cache)
            else:
                embeds = torch.cat([embeds, step], 1)
                hidden, _ = self._run(embeds, mask, positions)
        return self._split(requests, codes, wrists)

    def _split(self, requests: Sequence[Request], codes: Tensor,
               wrists: Tensor) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """Per request: its codes, and its wrist features smoothed across token boundaries
        (``config.wrist_smoothing``)."""
        out_codes, out_wrists = [], []
        for b, r in enumerate(requests):
            n = r.num_tokens
            out_codes.append(codes[b, :n].cpu().numpy())
            out_wrists.append(smooth_seams(wrists[b, :n].reshape(-1, 9).cpu().numpy(),
                                           self.config.wrist_smoothing))
        return out_codes, out_wrists


def check_points(points: np.ndarray) -> np.ndarray:
    arr = np.asarray(points, dtype=np.float32)
    if arr.ndim != 2 or arr.shape[1] != 3 or arr.shape[0] < 8:
        raise GeneratorError(f"expected an object point cloud of shape (P, 3) with P >= 8, got "
                             f"{arr.shape}")
    if not np.isfinite(arr).all():
        raise GeneratorError("the object point cloud has NaN or infinite values")
    return arr
