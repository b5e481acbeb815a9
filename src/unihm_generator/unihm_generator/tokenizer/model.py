"""The unified hand tokenizer: one shared codebook, an encoder/decoder pair per hand type.

A trajectory of a hand's actuated joints, (T, dof), is cut into chunks of ``chunk`` frames; each
chunk becomes one token, the index of the codebook vector nearest to the hand's encoder output
(paper eq. 1). Decoding looks the codes up and runs the requested hand's decoder, so a token
written by one hand can be realised by any other (paper eq. 6).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from numpy.typing import ArrayLike, NDArray
from torch import Tensor, nn

from unihm_generator.tokenizer.config import HandSpec, TokenizerConfig, TokenizerError
from unihm_generator.tokenizer.seams import smooth_seams


# ------------------------------------------------------------------------------- quantization
def nearest_codes(z: Tensor, codebook: Tensor) -> Tensor:
    """Index of the codebook row nearest to each row of z (squared Euclidean distance)."""
    # |z - e|^2 = |z|^2 - 2 z.e + |e|^2; |z|^2 does not change the argmin
    dist = (codebook * codebook).sum(1)[None, :] - 2.0 * (z @ codebook.t())
    return dist.argmin(dim=1)


def quantize(z: Tensor, codebook: Tensor, beta: float) -> tuple[Tensor, Tensor, Tensor]:
    """Nearest-code quantization with a straight-through gradient.

    Returns (z_q for the decoder, code indices, L_vq). The forward value of z_q is the code;
    its gradient flows to z unchanged, which is how the encoder learns through the argmin.
    L_vq = |sg[z] - e|^2 + beta |z - sg[e]|^2 (paper eq. 5), as means over elements
    like L_rec, so that the two terms keep the paper's balance whatever the sizes.
    """
    idx = nearest_codes(z.detach(), codebook.detach())
    e = codebook[idx]
    codebook_loss = (e - z.detach()).pow(2).mean()
    commitment = (z - e.detach()).pow(2).mean()
    z_q = z + (e - z).detach()
    return z_q, idx, codebook_loss + beta * commitment


# ---------------------------------------------------------------------------------- backbones
class MLPEncoder(nn.Module):
    """Flattened chunk (L x dof) -> code_dim."""

    def __init__(self, dof: int, chunk: int, hidden: int, code_dim: int) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(dof * chunk, hidden), nn.GELU(),
                                 nn.Linear(hidden, hidden), nn.GELU(),
                                 nn.Linear(hidden, code_dim))

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x.flatten(1))


class MLPDecoder(nn.Module):
    """code_dim -> chunk (L x dof)."""

    def __init__(self, dof: int, chunk: int, hidden: int, code_dim: int) -> None:
        super().__init__()
        self.dof, self.chunk = dof, chunk
        self.net = nn.Sequential(nn.Linear(code_dim, hidden), nn.GELU(),
                                 nn.Linear(hidden, hidden), nn.GELU(),
                                 nn.Linear(hidden, dof * chunk))

    def forward(self, z: Tensor) -> Tensor:
        return self.net(z).view(-1, self.chunk, self.dof)


class ConvEncoder(nn.Module):
    """1D convolutions over time (joints as channels), then a linear map to code_dim."""

    def __init__(self, dof: int, chunk: int, hidden: int, code_dim: int) -> None:
        super().__init__()
        self.conv = nn.Sequential(nn.Conv1d(dof, hidden, 3, padding=1), nn.GELU(),
                                  nn.Conv1d(hidden, hidden, 3, padding=1), nn.GELU())
        self.out = nn.Linear(hidden * chunk, code_dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.out(self.conv(x.transpose(1, 2)).flatten(1))


class ConvDecoder(nn.Module):
    """A linear map to (hidden x L) feature frames, then 1D convolutions back to joints."""

    def __init__(self, dof: int, chunk: int, hidden: int, code_dim: int) -> None:
        super().__init__()
        self.hidden, self.chunk = hidden, chunk
        self.inp = nn.Sequential(nn.Linear(code_dim, hidden * chunk), nn.GELU())
        self.conv = nn.Sequential(nn.Conv1d(hidden, hidden, 3, padding=1), nn.GELU(),
                                  nn.Conv1d(hidden, dof, 3, padding=1))

    def forward(self, z: Tensor) -> Tensor:
        h = self.inp(z).view(-1, self.hidden, self.chunk)
        return self.conv(h).transpose(1, 2)


def _backbone(config: TokenizerConfig, dof: int) -> tuple[nn.Module, nn.Module]:
    args = (dof, config.chunk, config.hidden, config.code_dim)
    if config.backbone == "mlp":
        return MLPEncoder(*args), MLPDecoder(*args)
    return ConvEncoder(*args), ConvDecoder(*args)


# -------------------------------------------------------------------------------- the model
class HandTokenizer(nn.Module):
    """Shared codebook + per-hand encoders/decoders, with a numpy API for trajectories.

    Torch-level methods (``encode_latent``, ``decode_codes``...) work on normalised chunks and
    are what training uses; ``encode``/``decode``/``translate`` take and return joint values in
    the hand's units, any number of frames.
    """

    def __init__(self, config: TokenizerConfig) -> None:
        super().__init__()
        self.config = config
        self.codebook = nn.Parameter(torch.empty(config.codebook_size, config.code_dim))
        nn.init.uniform_(self.codebook, -1.0 / config.codebook_size, 1.0 / config.codebook_size)
        self.encoders = nn.ModuleDict()
        self.decoders = nn.ModuleDict()
        self._lower: dict[str, Tensor] = {}
        self._scale: dict[str, Tensor] = {}
        for spec in list(config.hands.values()):
            self._build_hand(spec)

    # ----------------------------------------------------------------------------- hands
    @property
    def hands(self) -> tuple[str, ...]:
        return tuple(self.config.hands)

    @property
    def chunk(self) -> int:
        return self.config.chunk

    def _build_hand(self, spec: HandSpec) -> None:
        lower = torch.tensor(spec.lower, dtype=torch.float32)
        upper = torch.tensor(spec.upper, dtype=torch.float32)
        if lower.shape != (spec.dof,) or upper.shape != (spec.dof,) or not bool(
                (upper > lower).all()):
            raise TokenizerError(f"hand {spec.hand_id!r}: joint limits must be {spec.dof} "
                                 "pairs with upper > lower")
        enc, dec = _backbone(self.config, spec.dof)
        self.encoders[spec.hand_id] = enc
        self.decoders[spec.hand_id] = dec
        self._lower[spec.hand_id] = lower
        self._scale[spec.hand_id] = (upper - lower) / 2.0

    def add_hand(self, spec: HandSpec) -> None:
        """Register a new hand type (fresh encoder/decoder; the codebook is untouched)."""
        if spec.hand_id in self.config.hands:
            raise TokenizerError(f"hand {spec.hand_id!r} is already in the tokenizer")
        self.config.hands[spec.hand_id] = spec
        self._build_hand(spec)

    def check_hand(self, hand_id: str) -> HandSpec:
        """The hand's spec, or an error that lists the hands this tokenizer knows."""
        if hand_id not in self.config.hands:
            raise TokenizerError(
                f"hand {hand_id!r} is not in this tokenizer; it knows: "
                f"{', '.join(self.config.hands)} (add one with `unihm tokenizer add-hand`)")
        return self.config.hands[hand_id]

    # ----------------------------------------------------------------------- normalisation
    def normalize(self, hand_id: str, q: Tensor) -> Tensor:
        """Joint values -> [-1, 1] over the hand's joint limits."""
        return (q - self._lower[hand_id]) / self._scale[hand_id] - 1.0

    def denormalize(self, hand_id: str, x: Tensor) -> Tensor:
        return (x + 1.0) * self._scale[hand_id] + self._lower[hand_id]

    # ------------------------------------------------------------------------- torch level
    def encode_latent(self, hand_id: str, x: Tensor) -> Tensor:
        """Normalised chunks (B, chunk, dof) -> encoder outputs z_e (B, code_dim)."""
        return self.encoders[hand_id](x)

    def codes_of(self, z: Tensor) -> Tensor:
        return nearest_codes(z, self.codebook)

    def decode_codes(self, hand_id: str, codes: Tensor) -> Tensor:
        """Code indices (B,) -> normalised chunks (B, chunk, dof)."""
        return self.decoders[hand_id](self.codebook[codes])

    def forward(self, hand_id: str, x: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Normalised chunks -> (reconstruction, z_e, codes, L_vq)."""
        z = self.encode_latent(hand_id, x)
        z_q, idx, vq = quantize(z, self.codebook, self.config.beta)
        return self.decoders[hand_id](z_q), z, idx, vq

    # ------------------------------------------------------------------------- numpy level
    def _chunks(self, hand_id: str, joints: ArrayLike) -> tuple[Tensor, int, tuple[int, ...]]:
        spec = self.check_hand(hand_id)
        q = np.asarray(joints, dtype=np.float32)
        if q.ndim not in (2, 3) or q.shape[-1] != spec.dof or q.shape[-2] < 1:
            raise TokenizerError(
                f"hand {hand_id!r}: expected joints of shape (T, {spec.dof}) or "
                f"(B, T, {spec.dof}) with T >= 1, got {q.shape}")
        if not np.isfinite(q).all():
            raise TokenizerError(f"hand {hand_id!r}: joints contain NaN or inf")
        lead = q.shape[:-2]
        frames = q.shape[-2]
        q = q.reshape(-1, frames, spec.dof)
        n = -(-frames // self.chunk)
        pad = n * self.chunk - frames
        if pad:  # repeat the last frame: a held pose, the most likely continuation
            q = np.concatenate([q, np.repeat(q[:, -1:], pad, axis=1)], axis=1)
        x = self.normalize(hand_id, torch.from_numpy(q))
        return x.reshape(-1, self.chunk, spec.dof), frames, lead

    @torch.no_grad()
    def encode(self, hand_id: str, joints: ArrayLike) -> NDArray[np.int64]:
        """Joints (T, dof) or (B, T, dof) -> token ids (ceil(T / chunk),) or (B, ...).

        A trajectory whose length is not a multiple of ``chunk`` is padded with its last frame.
        """
        x, frames, lead = self._chunks(hand_id, joints)
        codes = self.codes_of(self.encode_latent(hand_id, x))
        return codes.numpy().astype(np.int64).reshape(*lead, -(-frames // self.chunk))

    @torch.no_grad()
    def decode(self, hand_id: str, tokens: ArrayLike, num_frames: int | None = None,
               seam_smoothing: float | None = None) -> NDArray[np.float32]:
        """Token ids (N,) or (B, N) -> joints (N * chunk, dof) in the hand's units.

        ``num_frames`` crops the result (the T given to ``encode``). The frames are then
        smoothed across chunk seams with strength ``seam_smoothing`` (None: the config's
        value; 0: chunks as decoded) and clipped to the hand's joint limits.
        """
        spec = self.check_hand(hand_id)
        ids = np.asarray(tokens)
        if ids.ndim not in (1, 2) or ids.shape[-1] < 1 or not np.issubdtype(ids.dtype,
                                                                              np.integer):
            raise TokenizerError(f"expected integer token ids of shape (N,) or (B, N), "
                                 f"got {ids.dtype} {ids.shape}")
        k = self.config.codebook_size
        if ids.min() < 0 or ids.max() >= k:
            raise TokenizerError(f"token ids must lie in [0, {k}), got [{ids.min()}, "
                                 f"{ids.max()}]")
        lead, n = ids.shape[:-1], ids.shape[-1]
        if num_frames is not None and not 1 <= num_frames <= n * self.chunk:
            raise TokenizerError(f"num_frames must be in [1, {n * self.chunk}] for {n} "
                                 f"tokens, got {num_frames}")
        x = self.decode_codes(hand_id, torch.from_numpy(ids.reshape(-1).astype(np.int64)))
        x = x.reshape(*lead, n * self.chunk, spec.dof)[..., :num_frames, :].numpy()
        strength = self.config.seam_smoothing if seam_smoothing is None else seam_smoothing
        x = torch.from_numpy(smooth_seams(x, strength)).clamp(-1.0, 1.0)
        return self.denormalize(hand_id, x).numpy()

    def reconstruct(self, hand_id: str, joints: ArrayLike) -> NDArray[np.float32]:
        """Encode then decode with the same hand (same number of frames as given)."""
        frames = np.asarray(joints).shape[-2]
        return self.decode(hand_id, self.encode(hand_id, joints), num_frames=frames)

    def translate(self, source: str, target: str, joints: ArrayLike) -> NDArray[np.float32]:
        """A motion of hand ``source`` realised by hand ``target``: D_j(e_Q(E_i(x_i)))."""
        self.check_hand(target)
        frames = np.asarray(joints).shape[-2] if np.ndim(joints) >= 2 else 0
        return self.decode(target, self.encode(source, joints), num_frames=frames or None)

    def num_tokens(self, num_frames: int) -> int:
        return -(-num_frames // self.chunk)

    def parameters_of(self, hands: Sequence[str]) -> list[nn.Parameter]:
        """The encoder and decoder parameters of some hands (what stage 2 trains)."""
        return [p for h in hands for m in (self.encoders[h], self.decoders[h])
                for p in m.parameters()]
