"""Language instructions for synthetic manipulation sequences, from templates, offline.

Every sequence needs several paraphrases of the command that produced it, and the evaluation
needs instructions the model never saw. Both come from one template grammar split in two
disjoint *phrasing sets*: ``seen`` (training) and ``heldout`` (unseen-instruction tests), which
differ in sentence templates, verbs and, where the language allows, in the phrases for parts,
destinations, angles, heights and distances. Object names come from the shared catalog
(:mod:`unihm_core.objects`) in both sets: held-out phrasing tests language, not new objects.

All verbs and phrases are ones perception's rule parser (``unihm_perception.instructions``)
maps back to the intended task, destination, angle and height, so a dataset instruction can be
replayed through the real pipeline; the tests check this for every task, object and seed.

An optional *annotator* (a callable registered here or published under the entry-point group
:data:`ANNOTATOR_ENTRY_POINT_GROUP`, e.g. a language model) may add paraphrases. None runs
unless asked for by name, so generation stays offline and reproducible by default.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points
from itertools import product

import numpy as np

from unihm_core.objects import (
    GraspPart,
    UnknownPartError,
    catalog_id,
    fallback_name,
    get_object,
)
from unihm_core.tasks import (
    TASK_HANDOVER,
    TASK_LIFT,
    TASK_PICK_AND_PLACE,
    TASK_PUSH,
    TASK_ROTATE,
    TASKS,
)

SEEN = "seen"
HELDOUT = "heldout"
PHRASINGS: tuple[str, ...] = (SEEN, HELDOUT)

REGIONS: tuple[str, ...] = ("left", "right", "center", "near", "far")
"""Table regions (perception's ids: near = the robot's edge of the table, far = the other)."""

RELATIONS: tuple[str, ...] = ("next_to", "left_of", "right_of", "in_front_of", "behind", "on",
                              "in", "to")
"""Relations to another object (perception's relation ids; "to" = toward it)."""

_PUSH_RELATIONS = frozenset({"next_to", "left_of", "right_of", "in_front_of", "behind", "to"})
ANNOTATOR_ENTRY_POINT_GROUP = "unihm.instruction_annotators"
MAX_HEIGHT_M = 1.0
MAX_DISTANCE_M = 1.0
MAX_ANNOTATION_CHARS = 300  # perception's parser refuses longer instructions


# -- errors ----------------------------------------------------------------------------------

class InstructionSpecError(ValueError):
    """Arguments that do not describe a task the templates can phrase (the message says why)."""


class UnknownTaskError(InstructionSpecError):
    """A task id outside :data:`unihm_core.tasks.TASKS`."""


class UnknownPhrasingError(InstructionSpecError):
    """A phrasing set other than ``seen`` or ``heldout``."""


class TaskParameterError(InstructionSpecError):
    """A parameter missing, out of range, or given to a task that does not use it."""


class PartError(InstructionSpecError, UnknownPartError):
    """A grasp part the object does not have (or an object with no known parts)."""


class NotEnoughParaphrasesError(InstructionSpecError):
    """More distinct paraphrases asked for than the templates can make for this task."""


class UnknownAnnotatorError(InstructionSpecError):
    """An annotator name that is neither registered nor published as an entry point."""


class AnnotatorError(RuntimeError):
    """An annotator that was asked for failed (it is never run unless asked for)."""


# -- task description ------------------------------------------------------------------------

@dataclass(frozen=True)
class Destination:
    """Where a pick-and-place or push ends: a table ``region`` (:data:`REGIONS`), or a
    ``relation`` (:data:`RELATIONS`) to a ``reference`` object (catalog id or mesh path;
    ``reference_name`` names objects outside the catalog)."""

    region: str | None = None
    relation: str | None = None
    reference: str | None = None
    reference_name: str | None = None

    def __post_init__(self) -> None:
        if (self.region is None) == (self.relation is None):
            raise TaskParameterError("a destination is either a region or a relation to an "
                                     f"object, got region={self.region!r}, "
                                     f"relation={self.relation!r}")
        if self.region is not None and self.region not in REGIONS:
            raise TaskParameterError(f"unknown region {self.region!r}; regions: "
                                     f"{', '.join(REGIONS)}")
        if self.relation is not None:
            if self.relation not in RELATIONS:
                raise TaskParameterError(f"unknown relation {self.relation!r}; relations: "
                                         f"{', '.join(RELATIONS)}")
            if not (self.reference or self.reference_name):
                raise TaskParameterError(f"relation {self.relation!r} needs a reference object")

    @classmethod
    def coerce(cls, value: str | Destination) -> Destination:
        """A region name ("left"), "relation:object" ("next_to:025_mug"), or a Destination."""
        if isinstance(value, Destination):
            return value
        if not isinstance(value, str):
            raise TaskParameterError(f"destination must be a str or Destination, got "
                                     f"{type(value).__name__}")
        if ":" in value:
            relation, reference = value.split(":", 1)
            return cls(relation=relation.strip(), reference=reference.strip())
        return cls(region=value.strip())


@dataclass(frozen=True)
class TaskSpec:
    """One manipulation the instructions describe; validated on construction.

    ``angle_deg`` is counter-clockwise positive seen from above (perception's convention);
    ``direction`` (push) is a table region and is shorthand for ``Destination(region=...)``;
    ``destination`` may also be given in :meth:`Destination.coerce`'s string form.
    """

    task: str
    object_id: str
    part: str | None = None
    destination: Destination | None = None
    angle_deg: float | None = None
    height_m: float | None = None
    direction: str | None = None
    distance_m: float | None = None
    object_name: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.object_id, str) or not self.object_id.strip():
            raise TaskParameterError(f"object_id must be a non-empty str, got {self.object_id!r}")
        if self.destination is not None and not isinstance(self.destination, Destination):
            object.__setattr__(self, "destination", Destination.coerce(self.destination))
        if self.task not in TASKS:
            raise UnknownTaskError(f"unknown task {self.task!r}; tasks: {', '.join(TASKS)}")
        if not self.name:
            raise TaskParameterError(f"no name for object {self.object_id!r}: give object_name")
        _check_task_parameters(self)
        if self.part is not None:
            self.grasp_part()  # raises PartError
        if self.target is not None and self.target.relation is not None:
            ref = self.target.reference or ""
            if ref and (catalog_id(ref) or ref) == (catalog_id(self.object_id) or self.object_id):
                raise TaskParameterError("the destination's reference object is the object "
                                         "being moved")

    @property
    def catalog_id(self) -> str | None:
        """The object's catalog id (None for objects outside the catalog)."""
        return catalog_id(self.object_id)

    @property
    def name(self) -> str:
        """The object's name: ``object_name``, else the catalog name, else the file stem."""
        if self.object_name:
            return self.object_name.strip().lower()
        cid = self.catalog_id
        return get_object(cid).name if cid else fallback_name(self.object_id)

    @property
    def target(self) -> Destination | None:
        """The destination, with a push ``direction`` turned into a region destination."""
        if self.direction is not None:
            return Destination(region=self.direction)
        return self.destination

    def grasp_part(self) -> GraspPart | None:
        """The catalog part named by ``part``; :class:`PartError` when the object lacks it."""
        if self.part is None:
            return None
        cid = self.catalog_id
        if cid is None:
            raise PartError(f"{self.object_id!r} is not in the object catalog, so it has no "
                            f"known parts (asked for {self.part!r})")
        try:
            return get_object(cid).part(self.part)
        except UnknownPartError as exc:
            raise PartError(str(exc)) from None


_PARAMETER_TASKS = {"angle_deg": TASK_ROTATE, "height_m": TASK_LIFT, "direction": TASK_PUSH,
                    "distance_m": TASK_PUSH}


def _check_task_parameters(spec: TaskSpec) -> None:
    """Each parameter belongs to one task; a stray one would silently not be phrased."""
    for name, task in _PARAMETER_TASKS.items():
        if getattr(spec, name) is not None and spec.task != task:
            raise TaskParameterError(f"{name} applies to {task} only, not {spec.task}")
    if spec.destination is not None and spec.task not in (TASK_PICK_AND_PLACE, TASK_PUSH):
        raise TaskParameterError(f"destination applies to pick_and_place and push, not "
                                 f"{spec.task}")
    if spec.task == TASK_PICK_AND_PLACE and spec.destination is None:
        raise TaskParameterError("pick_and_place needs a destination (a region or a relation "
                                 "to another object)")
    if spec.task == TASK_PUSH:
        _check_push(spec)
    if spec.angle_deg is not None:
        a = spec.angle_deg
        if not math.isfinite(a) or a == 0 or abs(a) > 360:
            raise TaskParameterError(f"angle_deg must be non-zero and within [-360, 360], got {a}")
    _check_range("height_m", spec.height_m, MAX_HEIGHT_M)
    _check_range("distance_m", spec.distance_m, MAX_DISTANCE_M)


def _check_push(spec: TaskSpec) -> None:
    if (spec.direction is None) == (spec.destination is None):
        raise TaskParameterError("push needs exactly one of direction (a table region) or "
                                 "destination (a relation to another object)")
    if spec.direction is not None and spec.direction not in REGIONS:
        raise TaskParameterError(f"unknown push direction {spec.direction!r}; directions: "
                                 f"{', '.join(REGIONS)}")
    rel = spec.destination.relation if spec.destination is not None else None
    if rel is not None and rel not in _PUSH_RELATIONS:
        raise TaskParameterError(f"an object is not pushed {rel!r} another; push relations: "
                                 f"{', '.join(sorted(_PUSH_RELATIONS))}")


def _check_range(name: str, value: float | None, upper: float) -> None:
    if value is not None and not (math.isfinite(value) and 0 < value <= upper):
        raise TaskParameterError(f"{name} must be in (0, {upper}] m, got {value}")


# -- the grammar -----------------------------------------------------------------------------

@dataclass(frozen=True)
class Template:
    """A sentence with slots {verb} {obj} {dest} {angle} {height} {dist}; a slot in [brackets]
    is optional (dropped when the task has no such parameter). ``verbs`` fill {verb}; ``lead``
    lists verbs written into the text, so the verb vocabularies of the sets can be compared."""

    text: str
    verbs: tuple[str, ...] = ()
    lead: tuple[str, ...] = ()

    @property
    def slots(self) -> frozenset[str]:
        return frozenset(re.findall(r"\{(\w+)\}", self.text))

    @property
    def required(self) -> frozenset[str]:
        return frozenset(re.findall(r"\{(\w+)\}", re.sub(r"\[[^\]]*\]", "", self.text)))


_T = Template
_PLACE_SEEN = ("put", "place", "move")
_PLACE_HELDOUT = ("transfer", "relocate", "carry")
_TEMPLATES: dict[str, dict[str, tuple[Template, ...]]] = {
    TASK_PICK_AND_PLACE: {
        SEEN: (_T("{verb} {obj} {dest}", _PLACE_SEEN),
               _T("Please {verb} {obj} {dest}", _PLACE_SEEN),
               _T("Pick up {obj} and {verb} it {dest}", ("put", "place"), ("pick up",)),
               _T("Lift {obj} and then {verb} it {dest}", ("put", "place"), ("lift",))),
        HELDOUT: (_T("Could you {verb} {obj} {dest}?", _PLACE_HELDOUT),
                  _T("I would like you to {verb} {obj} {dest}", _PLACE_HELDOUT),
                  _T("Grab {obj} and {verb} it {dest}", ("set", "carry"), ("grab",)),
                  _T("Take {obj} and then {verb} it {dest}", ("set", "carry"), ("take",))),
    },
    TASK_LIFT: {
        SEEN: (_T("{verb} {obj}[ {height}]", ("lift", "raise")),
               _T("Pick up {obj}", (), ("pick up",)),
               _T("Please {verb} {obj}", ("lift", "pick up", "raise")),
               _T("Pick up {obj} and {verb} it {height}", ("lift", "raise"), ("pick up",))),
        HELDOUT: (_T("Could you {verb} {obj}[ {height}]?", ("hoist", "elevate")),
                  _T("Hold up {obj}", (), ("hold up",)),
                  _T("Grab {obj} and {verb} it[ {height}]", ("hoist", "elevate"), ("grab",)),
                  _T("I want you to {verb} {obj}", ("grasp", "take", "hoist"))),
    },
    TASK_PUSH: {
        SEEN: (_T("{verb} {obj}[ {dist}] {dest}", ("push", "slide", "shove")),
               _T("Please {verb} {obj}[ {dist}] {dest}", ("push", "slide", "shove")),
               _T("Can you {verb} {obj}[ {dist}] {dest}?", ("push", "slide"))),
        HELDOUT: (_T("Could you {verb} {obj}[ {dist}] {dest}?", ("nudge", "drag", "scoot")),
                  _T("Without lifting it, {verb} {obj}[ {dist}] {dest}",
                     ("nudge", "drag", "scoot")),
                  _T("I would like you to {verb} {obj}[ {dist}] {dest}", ("nudge", "drag"))),
    },
    TASK_ROTATE: {
        SEEN: (_T("{verb} {obj}[ {angle}]", ("rotate", "turn")),
               _T("Please {verb} {obj}[ {angle}]", ("rotate", "turn")),
               _T("Can you {verb} {obj}[ {angle}]?", ("rotate", "turn"))),
        HELDOUT: (_T("Could you {verb} {obj}[ {angle}]?", ("spin", "twist", "swivel")),
                  _T("Without lifting it, {verb} {obj}[ {angle}]", ("spin", "twist", "swivel")),
                  _T("I want you to {verb} {obj}[ {angle}]", ("spin", "twist"))),
    },
    TASK_HANDOVER: {
        SEEN: (_T("{verb} {obj}", ("hand me", "pass me")),
               _T("Please {verb} {obj}", ("hand me", "pass me")),
               _T("{verb} {obj} to me", ("hand", "pass")),
               _T("Pick up {obj} and {verb} it to me", ("hand", "pass"), ("pick up",))),
        HELDOUT: (_T("Could you {verb} {obj}?", ("give me", "bring me", "hand over")),
                  _T("{verb} {obj} over to me", ("give", "bring")),
                  _T("Grab {obj} and {verb} it to me", ("give", "bring"), ("grab",)),
                  _T("I need you to {verb} {obj}", ("give me", "bring me"))),
    },
}

# Slot phrasings per set ("{w}" is a part word). Region nouns avoid the word "near": the parser
# reads it as the relation "near <object>", so "the front" names the robot's edge.
_PART_FORMS = {SEEN: ("by the {w}", "by its {w}"), HELDOUT: ("at the {w}", "at its {w}")}
_REGION_NOUNS: dict[str, dict[str, tuple[str, ...]]] = {
    SEEN: {"left": ("the left side of the table", "the left"),
           "right": ("the right side of the table", "the right"),
           "center": ("the middle of the table", "the center of the table"),
           "near": ("the front of the table", "the front side of the table"),
           "far": ("the back of the table", "the far side of the table")},
    HELDOUT: {"left": ("the left half of the table", "the left edge of the workspace"),
              "right": ("the right half of the table", "the right edge of the workspace"),
              "center": ("the centre of the table", "the middle of the workspace"),
              "near": ("the front edge of the table", "the front part of the desk"),
              "far": ("the far end of the table", "the back part of the desk")},
}
# Prepositions before a region: (pick-and-place, centre for pick-and-place, push).
_REGION_PREPS: dict[str, tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]] = {
    SEEN: (("on", "to"), ("in", "to"), ("to", "toward")),
    HELDOUT: (("onto", "over to"), ("into", "over to"), ("over to", "towards")),
}
# Only in heldout: "to the left of the table" (perception reads it as the table's left region).
_REGION_EXTRA = {HELDOUT: {"left": ("to the left of the table",),
                           "right": ("to the right of the table",)}}
_RELATION_PREPS: dict[str, dict[str, tuple[str, ...]]] = {
    SEEN: {"next_to": ("next to", "beside"), "left_of": ("to the left of",),
           "right_of": ("to the right of",), "in_front_of": ("in front of",),
           "behind": ("behind",), "on": ("on", "on top of"), "in": ("in", "into"),
           "to": ("toward",)},
    HELDOUT: {"next_to": ("close to", "near"), "left_of": ("on the left of", "left of"),
              "right_of": ("on the right of", "right of"), "in_front_of": ("in front of",),
              "behind": ("behind",), "on": ("onto",), "in": ("inside", "inside of"),
              "to": ("towards", "over to")},
}
SHARED_RELATION_PHRASES = frozenset({"in front of", "behind"})
"""Relation phrases both sets use: English has no second short way to say them."""

_HEIGHT_FORMS = {SEEN: ("{cm} cm", "by {cm} cm", "{cm} centimeters"),
                 HELDOUT: ("up {cm} cm", "by {cm} centimetres", "{mm} mm")}
_DISTANCE_FORMS = {SEEN: ("{cm} cm", "by {cm} cm"), HELDOUT: ("{cm} centimetres", "{mm} mm")}
_ANGLE_FORMS = {SEEN: ("{deg} degrees {dir}", "by {deg} degrees {dir}"),
                HELDOUT: ("{dir} by {deg} degrees", "{deg}\u00b0 {dir}")}
_TURN_FORMS = {HELDOUT: {90.0: ("a quarter turn {dir}",), 180.0: ("half a turn {dir}",)}}
_CLOCKWISE = {SEEN: ("clockwise",), HELDOUT: ("clockwise",)}
_COUNTERCLOCKWISE = {SEEN: ("counterclockwise",),
                     HELDOUT: ("anticlockwise", "counter-clockwise")}


def _number(value: float) -> str:
    """At most one decimal, no trailing zeros ("10", "12.5")."""
    return f"{round(value, 1):.1f}".removesuffix(".0")


def _referring(object_id: str, name: str | None = None) -> tuple[str, ...]:
    """Ways to name an object: name, synonyms, colour + name, size + name."""
    cid = catalog_id(object_id)
    entry = get_object(cid) if cid else None
    base = (name or (entry.name if entry else fallback_name(object_id))).strip().lower()
    refs = [base]
    if entry is None:
        return tuple(f"the {r}" for r in refs)
    refs += [s for s in entry.synonyms if s != base]
    words = base.split()
    if entry.color and entry.color not in words:
        at = 1 if len(words) > 1 and words[0] in {"large", "small", "big", "extra"} else 0
        refs.append(" ".join([*words[:at], entry.color, *words[at:]]))
    refs += [f"{size} {base}" for size in entry.size_words if size not in words]
    return tuple(f"the {r}" for r in dict.fromkeys(refs))


def _object_phrases(spec: TaskSpec, phrasing: str) -> tuple[str, ...]:
    refs = _referring(spec.object_id, spec.object_name)
    part = spec.grasp_part()
    if part is None:
        return refs
    parts = [form.format(w=w) for form in _PART_FORMS[phrasing] for w in part.words]
    return tuple(f"{r} {p}" for r, p in product(refs, parts))


def _region_phrases(region: str, task: str, phrasing: str) -> tuple[str, ...]:
    place, centre, push = _REGION_PREPS[phrasing]
    preps = push if task == TASK_PUSH else centre if region == "center" else place
    phrases = [f"{p} {n}" for p in preps for n in _REGION_NOUNS[phrasing][region]]
    phrases += _REGION_EXTRA.get(phrasing, {}).get(region, ())
    return tuple(phrases)


def _destination_phrases(spec: TaskSpec, phrasing: str) -> tuple[str, ...]:
    dest = spec.target
    if dest is None:
        return ()
    if dest.region is not None:
        return _region_phrases(dest.region, spec.task, phrasing)
    refs = _referring(dest.reference or "", dest.reference_name)
    preps = _RELATION_PREPS[phrasing][dest.relation or ""]  # Destination: region xor relation
    return tuple(f"{p} {r}" for p in preps for r in refs)


def _measure_phrases(forms: tuple[str, ...], metres: float | None) -> tuple[str, ...]:
    if metres is None:
        return ()
    mm = metres * 1000.0
    out = [f.format(cm=_number(metres * 100.0), mm=round(mm)) for f in forms
           if "{mm}" not in f or abs(mm - round(mm)) < 1e-6]
    return tuple(out)


def _angle_phrases(angle_deg: float | None, phrasing: str) -> tuple[str, ...]:
    if angle_deg is None:
        return ()
    dirs = (_CLOCKWISE if angle_deg < 0 else _COUNTERCLOCKWISE)[phrasing]
    deg = _number(abs(angle_deg))
    forms = _ANGLE_FORMS[phrasing] + _TURN_FORMS.get(phrasing, {}).get(abs(angle_deg), ())
    return tuple(f.format(deg=deg, dir=d) for f in forms for d in dirs)


def _slot_values(spec: TaskSpec, phrasing: str) -> dict[str, tuple[str, ...]]:
    """Each slot's phrasings for this task; a parameter the task lacks has no entry."""
    values = {
        "obj": _object_phrases(spec, phrasing),
        "dest": _destination_phrases(spec, phrasing),
        "angle": _angle_phrases(spec.angle_deg, phrasing),
        "height": _measure_phrases(_HEIGHT_FORMS[phrasing], spec.height_m),
        "dist": _measure_phrases(_DISTANCE_FORMS[phrasing], spec.distance_m),
    }
    return {k: v for k, v in values.items() if v}


_BY = re.compile(r"\bby\b", re.IGNORECASE)


def _finish(text: str) -> str:
    text = re.sub(r"\s+", " ", text).strip()
    text = re.sub(r"\s+([,?])", r"\1", text)
    return text[:1].upper() + text[1:]


def _expand(template: Template, values: dict[str, tuple[str, ...]]) -> list[str]:
    """Every sentence of one template for these slot values ([] when it does not fit)."""
    given = set(values) | {"verb"}
    if not template.required <= given or not set(values) <= template.slots:
        return []  # a parameter this template cannot say, or one it needs and the task lacks
    text = re.sub(r"\[([^\]]*)\]",
                  lambda m: m.group(1) if set(re.findall(r"\{(\w+)\}", m.group(1))) <= given
                  else "", template.text)
    slots = sorted(set(re.findall(r"\{(\w+)\}", text)) - {"verb"})
    verbs = template.verbs or ("",)
    out = []
    for verb in verbs:
        for combo in product(*(values[s] for s in slots)):
            sentence = _finish(text.format(verb=verb, **dict(zip(slots, combo, strict=True))))
            if len(_BY.findall(sentence)) < 2:  # "raise the mug by its handle by 10 cm"
                out.append(sentence)
    return out


def _check_phrasing(phrasing: str) -> None:
    if phrasing not in PHRASINGS:
        raise UnknownPhrasingError(f"unknown phrasing {phrasing!r}; phrasings: "
                                   f"{', '.join(PHRASINGS)}")


def all_instructions(spec: TaskSpec, phrasing: str = SEEN) -> list[list[str]]:
    """Every sentence the templates make for ``spec``, grouped by template (fixed order)."""
    _check_phrasing(phrasing)
    values = _slot_values(spec, phrasing)
    groups = [_expand(t, values) for t in _TEMPLATES[spec.task][phrasing]]
    return [g for g in groups if g]


def count_instructions(spec: TaskSpec, phrasing: str = SEEN) -> int:
    """How many distinct paraphrases :func:`generate_for_spec` can return for ``spec``."""
    return len({s.lower() for g in all_instructions(spec, phrasing) for s in g})


# -- sampling --------------------------------------------------------------------------------

def _rng(rng: np.random.Generator | None, seed: int | None) -> np.random.Generator:
    if rng is not None and seed is not None:
        raise TaskParameterError("give rng or seed, not both")
    if rng is not None:
        if not isinstance(rng, np.random.Generator):
            raise TaskParameterError(f"rng must be a numpy Generator, got {type(rng).__name__}")
        return rng
    return np.random.default_rng(0 if seed is None else seed)


def generate_for_spec(spec: TaskSpec, n: int, *, phrasing: str = SEEN,
                      rng: np.random.Generator | None = None, seed: int | None = None,
                      annotators: Sequence[str | InstructionAnnotator] = (),
                      validate: Callable[[str], bool] | None = None) -> list[str]:
    """``n`` distinct paraphrases of ``spec`` (see :func:`generate_instructions`)."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise TaskParameterError(f"n must be a non-negative int, got {n!r}")
    gen = _rng(rng, seed)
    groups = all_instructions(spec, phrasing)
    # Round-robin over templates in a random order, so a few paraphrases already differ in
    # sentence shape rather than only in a synonym.
    order = [list(gen.permutation(len(g))) for g in groups]
    template_order = list(gen.permutation(len(groups)))
    chosen: dict[str, str] = {}
    while len(chosen) < n and any(order):
        for t in template_order:
            if order[t] and len(chosen) < n:
                text = groups[t][order[t].pop(0)]
                chosen.setdefault(text.lower(), text)
    if len(chosen) < n:
        raise NotEnoughParaphrasesError(
            f"asked for {n} paraphrases of {spec.task} {spec.name!r} ({phrasing}), the "
            f"templates make {len(chosen)}")
    out = list(chosen.values())
    if annotators:
        out += _annotate(spec, phrasing, out, annotators=annotators, gen=gen,
                         validate=validate)
    return out


def generate_instructions(task: str, object_id: str, *, n: int = 5, phrasing: str = SEEN,
                          rng: np.random.Generator | None = None, seed: int | None = None,
                          part: str | None = None, destination: str | Destination | None = None,
                          angle_deg: float | None = None, height_m: float | None = None,
                          direction: str | None = None, distance_m: float | None = None,
                          object_name: str | None = None,
                          annotators: Sequence[str | InstructionAnnotator] = (),
                          validate: Callable[[str], bool] | None = None) -> list[str]:
    """``n`` distinct instructions for one manipulation, deterministic for a given seed/rng.

    ``phrasing`` picks the template set ("seen" for training, "heldout" for unseen-instruction
    tests). ``destination`` is a region ("left"), "relation:object" ("next_to:025_mug") or a
    :class:`Destination`. Objects outside the catalog are named by ``object_name`` or their
    id/mesh file stem. ``annotators`` (names or callables) may append more paraphrases,
    each kept only if ``validate`` (when given) accepts it. Bad arguments raise
    :class:`InstructionSpecError` subclasses (all ``ValueError``).
    """
    spec = TaskSpec(task=task, object_id=object_id, part=part,
                    destination=None if destination is None else Destination.coerce(destination),
                    angle_deg=angle_deg, height_m=height_m, direction=direction,
                    distance_m=distance_m, object_name=object_name)
    return generate_for_spec(spec, n, phrasing=phrasing, rng=rng, seed=seed,
                             annotators=annotators, validate=validate)


def templates(phrasing: str) -> dict[str, tuple[Template, ...]]:
    """The sentence templates of one phrasing set, per task."""
    _check_phrasing(phrasing)
    return {task: _TEMPLATES[task][phrasing] for task in TASKS}


def verbs(phrasing: str) -> dict[str, frozenset[str]]:
    """Every verb a phrasing set uses (slot verbs and verbs written into templates), per task."""
    return {task: frozenset(v for t in ts for v in (*t.verbs, *t.lead))
            for task, ts in templates(phrasing).items()}


def slot_phrases(phrasing: str) -> dict[str, frozenset[str]]:
    """The fixed slot phrasings of one set (parts, regions, relations, measures), per family."""
    _check_phrasing(phrasing)
    regions = {p for r in REGIONS for t in (TASK_PICK_AND_PLACE, TASK_PUSH)
               for p in _region_phrases(r, t, phrasing)}
    return {
        "part": frozenset(_PART_FORMS[phrasing]),
        "region": frozenset(regions),
        "relation": frozenset(p for ps in _RELATION_PREPS[phrasing].values() for p in ps),
        "height": frozenset(_HEIGHT_FORMS[phrasing]),
        "distance": frozenset(_DISTANCE_FORMS[phrasing]),
        "angle": frozenset(_ANGLE_FORMS[phrasing]),
        "rotation_direction": frozenset(_COUNTERCLOCKWISE[phrasing]),
    }


# -- external annotators ---------------------------------------------------------------------

@dataclass(frozen=True)
class AnnotationRequest:
    """What an annotator gets: the task, the phrasing set, the template paraphrases already
    chosen, how many more are wanted, and a seed for its own randomness."""

    spec: TaskSpec
    phrasing: str
    instructions: tuple[str, ...]
    n: int
    seed: int


InstructionAnnotator = Callable[[AnnotationRequest], Iterable[str]]
_ANNOTATORS: dict[str, InstructionAnnotator] = {}


def register_annotator(name: str, annotator: InstructionAnnotator, *,
                       replace: bool = False) -> None:
    """Make ``annotator`` available under ``name`` (it still runs only when asked for)."""
    if not callable(annotator):
        raise TypeError(f"annotator {name!r} is not callable")
    if name in _ANNOTATORS and not replace:
        raise ValueError(f"annotator {name!r} is already registered (pass replace=True)")
    _ANNOTATORS[name] = annotator


def unregister_annotator(name: str) -> None:
    """Forget a registered annotator (no error if there is none)."""
    _ANNOTATORS.pop(name, None)


def _entry_points() -> dict[str, EntryPoint]:
    return {ep.name: ep for ep in entry_points(group=ANNOTATOR_ENTRY_POINT_GROUP)}


def available_annotators() -> tuple[str, ...]:
    """Registered annotators and those published as entry points (not loaded)."""
    return tuple(sorted({*_ANNOTATORS, *_entry_points()}))


def get_annotator(name: str) -> InstructionAnnotator:
    """A registered annotator, else the entry point of that name (loaded and registered)."""
    if name in _ANNOTATORS:
        return _ANNOTATORS[name]
    ep = _entry_points().get(name)
    if ep is None:
        known = ", ".join(available_annotators()) or "none"
        raise UnknownAnnotatorError(f"no instruction annotator {name!r} (available: {known}); "
                                    f"register one or publish it under the entry-point group "
                                    f"{ANNOTATOR_ENTRY_POINT_GROUP!r}")
    annotator = ep.load()
    register_annotator(name, annotator)
    return annotator


def _annotate(spec: TaskSpec, phrasing: str, have: list[str], *,
              annotators: Sequence[str | InstructionAnnotator], gen: np.random.Generator,
              validate: Callable[[str], bool] | None) -> list[str]:
    """Paraphrases the annotators add: cleaned, new, short enough and (optionally) valid."""
    seen = {s.lower() for s in have}
    added: list[str] = []
    for item in annotators:
        annotator = get_annotator(item) if isinstance(item, str) else item
        label = item if isinstance(item, str) else getattr(item, "__name__", repr(item))
        request = AnnotationRequest(spec, phrasing, tuple(have), len(have),
                                    int(gen.integers(2**31)))
        try:
            proposals = list(annotator(request))
        except Exception as exc:
            raise AnnotatorError(f"instruction annotator {label!r} failed: {exc}") from exc
        for proposal in proposals:
            text = _finish(proposal) if isinstance(proposal, str) else ""
            if (text and len(text) <= MAX_ANNOTATION_CHARS and text.lower() not in seen
                    and (validate is None or validate(text))):
                seen.add(text.lower())
                added.append(text)
    return added
