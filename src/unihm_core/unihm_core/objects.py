"""The object catalog: how each YCB object is named, drawn, weighed and held.

One table for everything that talks about objects in words or numbers: perception's scene
renderer (colour word and rgba), its grounding (name and synonyms), the dataset's instruction
templates (names, synonyms, colour and size words, graspable parts) and physics (mass). Keeping
them together means a synonym added for grounding is also one the dataset says, and the other
way round.

Masses are those published with the YCB object set (Calli et al., 2015), in kg; ``None`` where
not recorded here. Render colours exist only for the objects whose meshes ship in the shared
assets (:data:`ASSET_OBJECT_IDS`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import PurePath
from types import MappingProxyType


class UnknownObjectError(KeyError):
    """An object id that is not in the catalog (the message lists the known ones)."""

    def __str__(self) -> str:  # KeyError would print the message with quotes around it
        return str(self.args[0]) if self.args else ""


class UnknownPartError(ValueError):
    """A part name the object does not have (the message lists the parts it has)."""


@dataclass(frozen=True)
class GraspPart:
    """A region of an object a hand can hold; ``words`` are what people call it, the first
    being the canonical word (used when a part is named by id)."""

    id: str
    words: tuple[str, ...]

    @property
    def word(self) -> str:
        return self.words[0]


@dataclass(frozen=True)
class CatalogObject:
    """One object: library ``id``, human ``name`` and ``synonyms``, ``color`` word (one of
    perception's colour words), render ``rgba`` (assets only), ``mass_kg``, graspable
    ``parts`` and intrinsic ``size_words`` ("small", "tall": true of the object wherever it is,
    unlike "largest", which depends on the scene)."""

    id: str
    name: str
    synonyms: tuple[str, ...] = ()
    color: str | None = None
    rgba: tuple[float, float, float, float] | None = None
    mass_kg: float | None = None
    parts: tuple[GraspPart, ...] = ()
    size_words: tuple[str, ...] = ()

    @property
    def names(self) -> tuple[str, ...]:
        """Name first, then synonyms."""
        return (self.name, *self.synonyms)

    def part(self, part: str) -> GraspPart:
        """The part with this id or word; :class:`UnknownPartError` when the object has none."""
        key = part.strip().lower()
        for p in self.parts:
            if key == p.id or key in p.words:
                return p
        have = ", ".join(p.id for p in self.parts) or "no graspable parts in the catalog"
        raise UnknownPartError(f"{self.id} has no part {part!r} (it has: {have})")


def _parts(**parts: tuple[str, ...]) -> tuple[GraspPart, ...]:
    return tuple(GraspPart(pid, words) for pid, words in parts.items())


_BOX = _parts(sides=("sides", "side"), top=("top",))
_CAN = _parts(body=("body", "side"), top=("top", "lid", "rim"))

_CATALOG: tuple[CatalogObject, ...] = (
    CatalogObject("002_master_chef_can", "coffee can", ("master chef can", "coffee tin", "coffee"),
                  color="blue", mass_kg=0.414, parts=_CAN),
    CatalogObject("003_cracker_box", "cracker box", ("cheez-it", "crackers", "box of crackers"),
                  color="red", mass_kg=0.411, parts=_BOX),
    CatalogObject("004_sugar_box", "sugar box", ("sugar", "box of sugar", "domino sugar"),
                  color="yellow", rgba=(0.93, 0.85, 0.35, 1.0), mass_kg=0.514, parts=_BOX,
                  size_words=("tall",)),
    CatalogObject("005_tomato_soup_can", "tomato soup can",
                  ("soup can", "tomato can", "soup", "can of soup", "campbell's"),
                  color="red", rgba=(0.78, 0.12, 0.10, 1.0), mass_kg=0.349, parts=_CAN,
                  size_words=("small",)),
    CatalogObject("006_mustard_bottle", "mustard bottle",
                  ("mustard", "french's", "yellow bottle", "condiment bottle"),
                  color="yellow", rgba=(0.98, 0.80, 0.05, 1.0), mass_kg=0.603,
                  parts=_parts(cap=("cap", "lid"), neck=("neck",), body=("body",)),
                  size_words=("tall",)),
    CatalogObject("007_tuna_fish_can", "tuna can", ("tuna", "fish can", "can of tuna"),
                  mass_kg=0.171, parts=_CAN),
    CatalogObject("010_potted_meat_can", "potted meat can", ("spam", "meat can"),
                  color="blue", mass_kg=0.370, parts=_CAN),
    CatalogObject("011_banana", "banana", color="yellow", mass_kg=0.066),
    CatalogObject("013_apple", "apple", color="red", mass_kg=0.068),
    CatalogObject("019_pitcher_base", "pitcher", ("jug", "water jug"), color="blue",
                  mass_kg=0.178, parts=_parts(handle=("handle",), rim=("rim", "lip"),
                                              body=("body",))),
    CatalogObject("021_bleach_cleanser", "bleach cleanser", ("bleach", "cleanser", "soft scrub"),
                  color="white", mass_kg=1.131, parts=_parts(cap=("cap", "lid"),
                                                             body=("body",))),
    CatalogObject("024_bowl", "bowl", ("dish", "red bowl"), color="red", mass_kg=0.147,
                  parts=_parts(rim=("rim", "edge"))),
    CatalogObject("025_mug", "mug", ("cup", "coffee mug", "coffee cup"),
                  color="red", rgba=(0.70, 0.08, 0.12, 1.0), mass_kg=0.118,
                  parts=_parts(handle=("handle",), rim=("rim", "lip"), body=("body", "side")),
                  size_words=("small",)),
    CatalogObject("029_plate", "plate", ("dish", "dinner plate"), color="red", mass_kg=0.279,
                  parts=_parts(rim=("rim", "edge"))),
    CatalogObject("035_power_drill", "power drill", ("drill",), mass_kg=0.895,
                  parts=_parts(handle=("handle", "grip"), body=("body",))),
    CatalogObject("036_wood_block", "wood block", ("wooden block", "block of wood"),
                  color="brown", mass_kg=0.729, parts=_BOX),
    CatalogObject("037_scissors", "scissors", mass_kg=0.082,
                  parts=_parts(handles=("handles", "handle"), blades=("blades",))),
    CatalogObject("042_adjustable_wrench", "adjustable wrench", ("wrench", "spanner"),
                  color="gray", mass_kg=0.252,
                  parts=_parts(handle=("handle",), head=("head", "jaws"))),
    CatalogObject("044_flat_screwdriver", "screwdriver", ("flat screwdriver",), mass_kg=0.098,
                  parts=_parts(handle=("handle",), shaft=("shaft",))),
    CatalogObject("048_hammer", "hammer", mass_kg=0.665,
                  parts=_parts(handle=("handle",), head=("head",))),
    CatalogObject("051_large_clamp", "large clamp", ("clamp",),
                  color="black", rgba=(0.12, 0.12, 0.13, 1.0), mass_kg=0.125,
                  parts=_parts(handle=("handle", "handles", "grip"), jaws=("jaws", "jaw"))),
    CatalogObject("052_extra_large_clamp", "extra large clamp", ("clamp", "big clamp"),
                  color="black", mass_kg=0.202,
                  parts=_parts(handle=("handle", "handles", "grip"), jaws=("jaws", "jaw"))),
    CatalogObject("061_foam_brick", "foam brick", ("brick", "foam block", "red block",
                                                   "sponge block"),
                  color="red", rgba=(0.85, 0.22, 0.18, 1.0), mass_kg=0.028, parts=_BOX,
                  size_words=("small", "little")),
    CatalogObject("077_rubiks_cube", "rubik's cube", ("cube", "puzzle cube")),
)

OBJECTS: Mapping[str, CatalogObject] = MappingProxyType({o.id: o for o in _CATALOG})
"""YCB id -> catalog entry (read-only: edit :data:`_CATALOG`, the one place objects are named)."""

ASSET_OBJECT_IDS: tuple[str, ...] = ("004_sugar_box", "005_tomato_soup_can",
                                     "006_mustard_bottle", "025_mug", "051_large_clamp",
                                     "061_foam_brick")
"""The objects whose meshes ship in the shared assets (``ycb_objects/<id>/``); each has an rgba."""

PART_WORDS: tuple[str, ...] = tuple(sorted({w for o in _CATALOG for p in o.parts
                                            for w in p.words}))
"""Every word the catalog uses for a graspable part (what "by the <part>" may name)."""

# Mesh file stems that say nothing about the object (YCB keeps the name in the folder).
_GENERIC_STEMS = {"textured_simple", "textured", "nontextured", "model", "mesh", "google_16k"}


def get_object(object_id: str) -> CatalogObject:
    """The catalog entry; :class:`UnknownObjectError` (a KeyError) naming the known ids."""
    try:
        return OBJECTS[object_id]
    except KeyError:
        raise UnknownObjectError(f"unknown object {object_id!r}; the catalog has: "
                                 f"{', '.join(OBJECTS)}") from None


def catalog_id(object_ref: str) -> str | None:
    """The catalog id an id or mesh path refers to ("…/025_mug/textured_simple.obj" -> 025_mug),
    or None when it is not a catalog object."""
    if object_ref in OBJECTS:
        return object_ref
    path = PurePath(object_ref)
    for candidate in (path.stem, path.parent.name):
        if candidate in OBJECTS:
            return candidate
    return None


def fallback_name(object_ref: str) -> str:
    """A human name for an object outside the catalog, from its id or mesh file stem
    ("/meshes/blue_kettle.obj" -> "blue kettle", "099_toy_car" -> "toy car"); "" if none."""
    path = PurePath(object_ref)
    stem = path.stem if path.suffix else path.name
    if stem.lower() in _GENERIC_STEMS:
        stem = path.parent.name
    stem = re.sub(r"^\d+[_\-\s]*", "", stem)
    return re.sub(r"[\s_\-]+", " ", stem).strip().lower()
