"""Instruction strings to a structured request: task, object phrase, destination, attributes.

The parser is a small rule set rather than a model: the task vocabulary is closed (the TASK_*
constants of ``unihm_msgs/TargetTrajectory``) and a wrong task is worse than a clear error, so
every phrase that maps to a task is listed in :data:`TASK_VERBS` and anything else is refused
with :class:`InstructionError`. Object names are left as free text; grounding them against the
scene is :mod:`unihm_perception.grounding`'s job.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

from unihm_core.objects import PART_WORDS

# The task vocabulary lives in unihm_core.tasks (shared with the planner and the dataset); it is
# re-exported here because callers import the TASK_* names from the parser.
from unihm_core.tasks import (
    TASK_HANDOVER,
    TASK_LIFT,
    TASK_PICK_AND_PLACE,
    TASK_PUSH,
    TASK_ROTATE,
    TASKS,  # noqa: F401  (re-exported for callers of the parser)
)

MAX_INSTRUCTION_CHARS = 300

# Verb phrase -> task. Longer phrases are tried first. A lift verb with a destination becomes
# pick-and-place ("pick up the mug and put it in the bowl", "lift the can onto the plate");
# a place verb needs a destination. Priority when several verbs occur: handover > rotate >
# push > pick-and-place > lift (the more specific motion wins).
TASK_VERBS: dict[str, str] = {
    "hand over": TASK_HANDOVER, "hand me": TASK_HANDOVER, "give me": TASK_HANDOVER,
    "pass me": TASK_HANDOVER, "bring me": TASK_HANDOVER, "hand": TASK_HANDOVER,
    "give": TASK_HANDOVER, "pass": TASK_HANDOVER,
    "rotate": TASK_ROTATE, "turn": TASK_ROTATE, "spin": TASK_ROTATE, "twist": TASK_ROTATE,
    "swivel": TASK_ROTATE,
    "push": TASK_PUSH, "slide": TASK_PUSH, "shove": TASK_PUSH, "nudge": TASK_PUSH,
    "drag": TASK_PUSH, "scoot": TASK_PUSH,
    "put": TASK_PICK_AND_PLACE, "place": TASK_PICK_AND_PLACE, "set": TASK_PICK_AND_PLACE,
    "drop": TASK_PICK_AND_PLACE, "move": TASK_PICK_AND_PLACE, "transfer": TASK_PICK_AND_PLACE,
    "relocate": TASK_PICK_AND_PLACE, "carry": TASK_PICK_AND_PLACE, "bring": TASK_PICK_AND_PLACE,
    "stack": TASK_PICK_AND_PLACE, "store": TASK_PICK_AND_PLACE,
    "pick up": TASK_LIFT, "pick": TASK_LIFT, "lift": TASK_LIFT, "raise": TASK_LIFT,
    "hoist": TASK_LIFT, "elevate": TASK_LIFT, "grab": TASK_LIFT, "grasp": TASK_LIFT,
    "take": TASK_LIFT, "hold up": TASK_LIFT, "get": TASK_LIFT,
}
_PRIORITY = {TASK_HANDOVER: 0, TASK_ROTATE: 1, TASK_PUSH: 2, TASK_PICK_AND_PLACE: 3,
             TASK_LIFT: 4}

# Relation phrase -> relation id (longest first when matching).
RELATIONS: dict[str, str] = {
    "to the left of": "left_of", "on the left of": "left_of", "left of": "left_of",
    "to the right of": "right_of", "on the right of": "right_of", "right of": "right_of",
    "in front of": "in_front_of", "behind": "behind", "next to": "next_to",
    "beside": "next_to", "near": "next_to", "close to": "next_to", "by": "next_to",
    "on top of": "on", "onto": "on", "on": "on", "into": "in", "inside of": "in",
    "inside": "in", "in": "in", "towards": "to", "toward": "to", "over to": "to", "to": "to",
}

# Named table regions (the destination of "move the can to the left side of the table").
REGIONS: dict[str, str] = {
    "left": "left", "right": "right", "center": "center", "centre": "center",
    "middle": "center", "front": "near", "near": "near", "back": "far", "far": "far",
}

COLOR_WORDS = ("red", "orange", "yellow", "green", "blue", "purple", "pink", "brown", "black",
               "white", "gray", "grey")
# Size word -> canonical size attribute.
SIZE_WORDS: dict[str, str] = {
    "big": "largest", "bigger": "largest", "biggest": "largest", "large": "largest",
    "larger": "largest", "largest": "largest", "small": "smallest", "smaller": "smallest",
    "smallest": "smallest", "little": "smallest", "tiny": "smallest", "tall": "tallest",
    "taller": "tallest", "tallest": "tallest", "short": "shortest", "shorter": "shortest",
    "shortest": "shortest",
}
# Spatial phrase -> canonical spatial attribute (robot at the origin, x away from it, y left).
SPATIAL_WORDS: dict[str, str] = {
    "closest to me": "nearest", "nearest to me": "nearest", "closest to you": "nearest",
    "on the left": "left", "on the right": "right", "to the left": "left",
    "to the right": "right", "in the middle": "middle", "in the back": "farthest",
    "in the front": "nearest", "left": "left", "leftmost": "left", "right": "right",
    "rightmost": "right", "nearest": "nearest", "closest": "nearest", "closer": "nearest",
    "nearer": "nearest", "front": "nearest", "farthest": "farthest", "furthest": "farthest",
    "farther": "farthest", "further": "farthest", "back": "farthest", "middle": "middle",
    "center": "middle", "central": "middle",
}
_ARTICLES = {"the", "a", "an", "that", "this", "those", "these", "some", "my", "your"}
_PRONOUNS = {"it", "them", "one", "that", "this"}
_FILLER = ("please", "can you", "could you", "would you", "will you", "i want you to",
           "i would like you to", "robot", "now", "carefully", "gently", "then")
_CLAUSE_SPLIT = re.compile(r"\s*(?:,\s*)?\b(?:and then|and|then)\b\s*")

_ANGLE = re.compile(r"\b(?:by\s+)?(-?\d+(?:\.\d+)?)\s*(degrees?|deg|°|radians?|rad)\b|"
                    r"(-?\d+(?:\.\d+)?)\s*°")
_HEIGHT = re.compile(r"\b(?:by\s+|up\s+)?(\d+(?:\.\d+)?)\s*(cm|centimet(?:er|re)s?|mm|"
                     r"millimet(?:er|re)s?|m|met(?:er|re)s?)\b")
_TURNS = {"quarter turn": math.pi / 2, "half turn": math.pi, "half a turn": math.pi,
          "around": math.pi, "halfway around": math.pi, "upside": math.nan}


class InstructionError(ValueError):
    """The instruction cannot be turned into a task (the message says what was missing)."""


@dataclass(frozen=True)
class Attributes:
    """Words that pick one object among similar ones."""

    colors: tuple[str, ...] = ()
    size: str | None = None      # "largest", "smallest", "tallest", "shortest"
    spatial: str | None = None   # "left", "right", "nearest", "farthest", "middle"

    def __bool__(self) -> bool:
        return bool(self.colors or self.size or self.spatial)


@dataclass(frozen=True)
class ObjectPhrase:
    """An object as the instruction names it: ``text`` as written, ``noun`` without articles
    and attribute words ("" when the phrase is only attributes, e.g. "the red one")."""

    text: str
    noun: str
    attributes: Attributes = field(default_factory=Attributes)

    @property
    def name(self) -> str:
        """Colour words plus noun ("yellow bottle"): what is compared with labels/synonyms."""
        return " ".join((*self.attributes.colors, self.noun)).strip()


@dataclass(frozen=True)
class DestinationPhrase:
    """Where the object should go: a relation to an object, or a named table region."""

    relation: str                     # a value of RELATIONS, or "region"
    target: ObjectPhrase | None = None
    region: str | None = None         # a value of REGIONS when relation == "region"


@dataclass(frozen=True)
class Instruction:
    """A parsed instruction; ``task`` is one of :data:`TASKS`."""

    text: str
    task: str
    verb: str
    object: ObjectPhrase
    destination: DestinationPhrase | None = None
    angle_rad: float | None = None    # rotate: signed angle about +z (counter-clockwise > 0)
    height_m: float | None = None     # lift: requested height
    part: str | None = None           # where to hold it ("by the handle" -> "handle")


def _normalise(text: str) -> str:
    text = text.lower().replace("\u2019", "'").replace("\u00b0", " degrees ")
    text = re.sub(r"[^\w'\-\.\s,]", " ", text)
    text = re.sub(r"(?<!\d)\.|\.(?!\d)", " ", text)
    for filler in _FILLER:
        text = re.sub(rf"\b{re.escape(filler)}\b", " ", text)
    return re.sub(r"\s+", " ", text).strip(" ,")


def _alternation(words: list[str] | tuple[str, ...]) -> str:
    return "|".join(re.escape(w) for w in sorted(words, key=len, reverse=True))


_VERB_RE = re.compile(rf"\b({_alternation(list(TASK_VERBS))})\b")
_REL_RE = re.compile(rf"\b({_alternation(list(RELATIONS))})\b")
_SPATIAL_RE = re.compile(rf"\b({_alternation(list(SPATIAL_WORDS))})\b")
_REGION_RE = re.compile(
    rf"^(?:the\s+)?({_alternation(list(REGIONS))})(?:\s+(?:side|edge|part|end|corner|half))?"
    r"(?:\s+of\s+the\s+(?:table|workspace|desk))?$")


# "by the handle", "holding it at the rim": where to hold the object, not where to put it ("by"
# is also a relation). A following "of" keeps "by the side of the bowl" a destination.
_PART_RE = re.compile(
    r"(?:\s*,)?\s*\b(?:(?:while\s+)?(?:holding|gripping|grasping|grabbing)\s+(?:it|them)\s+)?"
    rf"(?:by|at)\s+(?:the|its)\s+({_alternation(PART_WORDS)})\b(?!\s+of\b)")

_SIDE_START_RE = re.compile(r"^(?:the\s+)?(?:left|right|front|back|middle|center|centre)\b")
_TABLE_RE = re.compile(r"^(?:the\s+)?(?:table|desk|workspace)$")
_SIDE_REGIONS = {"left_of": "left", "right_of": "right", "behind": "far", "in_front_of": "near"}


def parse_object_phrase(text: str) -> ObjectPhrase:
    """Split an object phrase into its noun and attribute words."""
    text = text.strip(" ,")
    rest = text
    spatial = None
    match = _SPATIAL_RE.search(rest)
    if match:
        spatial = SPATIAL_WORDS[match.group(1)]
        rest = rest[:match.start()] + " " + rest[match.end():]
    colors: list[str] = []
    size = None
    words = []
    for word in rest.split():
        if word in COLOR_WORDS:
            colors.append("gray" if word == "grey" else word)
        elif word in SIZE_WORDS and size is None:
            size = SIZE_WORDS[word]
        elif word not in _ARTICLES and word not in {"side", "of", "the", "one", "is",
                                                    "which", "object", "thing", "item"}:
            words.append(word)
    noun = " ".join(words)
    if noun in _PRONOUNS:
        noun = ""
    return ObjectPhrase(text=text, noun=noun,
                        attributes=Attributes(tuple(colors), size, spatial))


def _is_pronoun(text: str) -> bool:
    words = [w for w in text.split() if w not in _ARTICLES]
    return not words or all(w in _PRONOUNS for w in words)


def _split_destination(rest: str, allow_region: bool) -> tuple[str, DestinationPhrase | None]:
    """Object part and destination of the text after a verb ("the mug in the bowl")."""
    for match in _REL_RE.finditer(rest):
        if match.start() == 0:
            continue  # "pick up the mug" leaves "the mug"; a leading "on" is no relation
        relation = RELATIONS[match.group(1)]
        target = rest[match.end():].strip(" ,")
        obj = rest[:match.start()].strip(" ,")
        region = _REGION_RE.match(target)
        later = _REL_RE.search(rest, match.end())
        if region:
            if not allow_region or later is not None:
                continue  # "the mug on the left": an attribute of the object, not a place
            if relation in {"to", "on", "in"}:
                return obj, DestinationPhrase("region", region=REGIONS[region.group(1)])
        if later is not None and _SIDE_START_RE.match(target):
            continue  # "the red one on the right to the back ...": the side is an attribute
        if _TABLE_RE.match(target) and relation in _SIDE_REGIONS:
            if not allow_region:
                continue
            # "to the right of the table" names a region of the table, not an object
            return obj, DestinationPhrase("region", region=_SIDE_REGIONS[relation])
        if target in {"me", "you", "the person", "the user"}:
            return obj, None
        if not target:
            continue
        return obj, DestinationPhrase(relation, target=parse_object_phrase(target))
    return rest, None


def _extract_angle(text: str) -> tuple[str, float | None]:
    angle = None
    match = _ANGLE.search(text)
    if match:
        value = float(match.group(1) or match.group(3))
        unit = match.group(2) or "degrees"
        angle = value if unit.startswith("rad") else math.radians(value)
        text = text[:match.start()] + " " + text[match.end():]
    else:
        for phrase, value in _TURNS.items():
            if re.search(rf"\b{phrase}\b", text) and not math.isnan(value):
                angle = value
                text = re.sub(rf"\b(?:by\s+)?(?:a\s+)?{phrase}\b", " ", text)
                break
    if re.search(r"\b(?:counter-?clockwise|anti-?clockwise)\b", text):
        angle = abs(angle) if angle is not None else None
        text = re.sub(r"\b(?:counter-?clockwise|anti-?clockwise)\b", " ", text)
    elif re.search(r"\bclockwise\b", text):
        angle = -abs(angle) if angle is not None else -math.pi / 2
        text = re.sub(r"\bclockwise\b", " ", text)
    return re.sub(r"\s+", " ", text).strip(), angle


def _extract_height(text: str) -> tuple[str, float | None]:
    match = _HEIGHT.search(text)
    if not match:
        return text, None
    value, unit = float(match.group(1)), match.group(2)
    scale = 0.01 if unit.startswith("c") else 0.001 if unit.startswith("m") and unit != "m" and \
        not unit.startswith("met") else 1.0
    text = text[:match.start()] + " " + text[match.end():]
    return re.sub(r"\s+", " ", text).strip(), value * scale


def _extract_part(text: str) -> tuple[str, str | None]:
    """Remove a grasp-part phrase; return the text and the part word (None without one)."""
    match = _PART_RE.search(text)
    if not match:
        return text, None
    text = text[:match.start()] + " " + text[match.end():]
    return re.sub(r"\s+", " ", text).strip(" ,"), match.group(1)


def _parse_clauses(norm: str, text: str) -> list[tuple[str, str, str]]:
    """Each clause as (verb, task, text after the verb)."""
    clauses = [c for c in _CLAUSE_SPLIT.split(norm) if c.strip()]

    parsed: list[tuple[str, str, str]] = []
    for clause in clauses:
        match = _VERB_RE.search(clause)
        if match is None:
            if parsed:  # "... and the bowl": continuation of the previous clause
                verb, task, rest = parsed[-1]
                parsed[-1] = (verb, task, f"{rest} and {clause}")
            continue
        verb = match.group(1)
        rest = clause[match.end():].strip()
        rest = re.sub(r"^(?:up|over|down|around|round)\b\s*", "", rest)
        parsed.append((verb, TASK_VERBS[verb], rest))
    if not parsed:
        raise InstructionError(
            f"no task recognized in {text!r}: start with a verb such as pick up, put, lift, "
            "push, rotate or hand over")

    return parsed


def parse_instruction(text: str) -> Instruction:
    """Parse an instruction; raise :class:`InstructionError` naming what is missing."""
    if not isinstance(text, str) or not text.strip():
        raise InstructionError("empty instruction: say what to do, e.g. 'lift the mug'")
    if len(text) > MAX_INSTRUCTION_CHARS:
        raise InstructionError(f"instruction too long ({len(text)} characters, at most "
                               f"{MAX_INSTRUCTION_CHARS}): give one short command")
    norm = _normalise(text)
    norm, angle = _extract_angle(norm)
    norm, height = _extract_height(norm)
    norm, part = _extract_part(norm)
    parsed = _parse_clauses(norm, text)

    object_phrase: ObjectPhrase | None = None
    destination: DestinationPhrase | None = None
    spatial_free = re.sub(r"\b(?:closest|nearest|closer|nearer|close|near) to (?:me|you)\b", "",
                          norm)
    to_me = re.search(r"\bto (?:me|you|the person|the user)\b", spatial_free) is not None
    for i, (_verb, task, rest) in enumerate(parsed):
        later = i + 1 < len(parsed)
        lifts_first = task == TASK_LIFT and later
        allow_region = task in {TASK_PICK_AND_PLACE, TASK_PUSH}
        obj_text, dest = (rest, None) if lifts_first else _split_destination(rest, allow_region)
        if destination is None and dest is not None:
            destination = dest
        if object_phrase is None and not _is_pronoun(obj_text):
            object_phrase = parse_object_phrase(obj_text)

    tasks = {task for _, task, _ in parsed}
    if to_me and tasks & {TASK_HANDOVER, TASK_PICK_AND_PLACE, TASK_LIFT}:
        tasks.add(TASK_HANDOVER)
    if destination is not None and TASK_LIFT in tasks:
        tasks.add(TASK_PICK_AND_PLACE)
    task = min(tasks, key=_PRIORITY.__getitem__)
    verb = next((v for v, t, _ in parsed if t == task), parsed[0][0])

    if object_phrase is None or not (object_phrase.noun or object_phrase.attributes):
        raise InstructionError(f"no object recognized in {text!r}: name the object to "
                               f"{verb}, e.g. '{verb} the mug'")
    if task == TASK_PICK_AND_PLACE and destination is None:
        raise InstructionError(f"no destination recognized in {text!r}: say where to {verb} "
                               "the object, e.g. 'in the bowl' or 'on the left side of the table'")
    if task == TASK_HANDOVER:
        destination = None
    if task != TASK_ROTATE:
        angle = None
    if task != TASK_LIFT:
        height = None
    return Instruction(text=text, task=task, verb=verb, object=object_phrase,
                       destination=destination, angle_rad=angle, height_m=height, part=part)
