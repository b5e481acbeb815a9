"""Instruction parsing: many phrasings per task, attributes, destinations and clear refusals."""

import math

import pytest

from unihm_perception.instructions import (
    TASK_HANDOVER,
    TASK_LIFT,
    TASK_PICK_AND_PLACE,
    TASK_PUSH,
    TASK_ROTATE,
    InstructionError,
    parse_instruction,
)

PHRASINGS = [
    ("pick up the mustard bottle and put it in the bowl", TASK_PICK_AND_PLACE, "mustard bottle"),
    ("Put the mug on the plate.", TASK_PICK_AND_PLACE, "mug"),
    ("place the sugar box into the bowl", TASK_PICK_AND_PLACE, "sugar box"),
    ("move the soup can to the left side of the table", TASK_PICK_AND_PLACE, "soup can"),
    ("Could you grab the banana and then set it next to the mug?", TASK_PICK_AND_PLACE,
     "banana"),
    ("lift the apple onto the plate", TASK_PICK_AND_PLACE, "apple"),
    ("lift the mug", TASK_LIFT, "mug"),
    ("pick up the clamp", TASK_LIFT, "clamp"),
    ("please raise the foam brick by 10 cm", TASK_LIFT, "foam brick"),
    ("grab the cracker box", TASK_LIFT, "cracker box"),
    ("push the can to the right", TASK_PUSH, "can"),
    ("slide the sugar box next to the bowl", TASK_PUSH, "sugar box"),
    ("nudge the brick toward the mug", TASK_PUSH, "brick"),
    ("rotate the mug by 90 degrees", TASK_ROTATE, "mug"),
    ("turn the bowl around", TASK_ROTATE, "bowl"),
    ("spin the can 45 degrees clockwise", TASK_ROTATE, "can"),
    ("hand me the banana", TASK_HANDOVER, "banana"),
    ("give the mug to me", TASK_HANDOVER, "mug"),
    ("pick up the drill and hand it over", TASK_HANDOVER, "drill"),
    ("bring me the apple", TASK_HANDOVER, "apple"),
    ("pass me the scissors please", TASK_HANDOVER, "scissors"),
]


@pytest.mark.parametrize(("text", "task", "noun"), PHRASINGS)
def test_task_and_object(text: str, task: str, noun: str) -> None:
    parsed = parse_instruction(text)
    assert parsed.task == task
    assert parsed.object.noun == noun


def test_destinations() -> None:
    d = parse_instruction("pick up the French's and put it in the bowl").destination
    assert d is not None and d.relation == "in" and d.target is not None
    assert d.target.noun == "bowl"
    d = parse_instruction("move the can to the left side of the table").destination
    assert d is not None and (d.relation, d.region) == ("region", "left")
    d = parse_instruction("put the mug to the right of the bowl").destination
    assert d is not None and d.relation == "right_of"
    d = parse_instruction("place the apple behind the red bowl").destination
    assert d is not None and d.relation == "behind" and d.target is not None
    assert d.target.attributes.colors == ("red",)


def test_attributes() -> None:
    obj = parse_instruction("lift the small red mug on the left").object
    assert obj.noun == "mug"
    assert obj.attributes.colors == ("red",)
    assert obj.attributes.size == "smallest"
    assert obj.attributes.spatial == "left"
    assert parse_instruction("grab the can closest to me").object.attributes.spatial == "nearest"
    assert parse_instruction("lift the biggest box").object.attributes.size == "largest"
    one = parse_instruction("put the blue one in the bowl").object
    assert one.noun == "" and one.attributes.colors == ("blue",)
    # "on the left" before another destination describes the object, not a place
    parsed = parse_instruction("pick up the mug on the left and put it next to the bowl")
    assert parsed.object.attributes.spatial == "left"
    assert parsed.destination is not None and parsed.destination.relation == "next_to"


def test_angles_and_heights() -> None:
    assert parse_instruction("rotate the mug").angle_rad is None
    assert parse_instruction("rotate the mug by 90 degrees").angle_rad == pytest.approx(math.pi / 2)
    assert parse_instruction("turn the can clockwise").angle_rad == pytest.approx(-math.pi / 2)
    assert parse_instruction("rotate the box by 0.5 rad").angle_rad == pytest.approx(0.5)
    assert parse_instruction("lift the mug by 20 cm").height_m == pytest.approx(0.2)


def test_grasp_parts_are_not_destinations() -> None:
    # "by" is also a relation ("by the bowl"); "by the handle" says where to hold the object
    parsed = parse_instruction("pick up the mug by the handle")
    assert (parsed.task, parsed.object.noun, parsed.part) == (TASK_LIFT, "mug", "handle")
    assert parsed.destination is None
    parsed = parse_instruction("lift the mug by its handle and put it next to the sugar box")
    assert (parsed.task, parsed.object.noun, parsed.part) == (TASK_PICK_AND_PLACE, "mug", "handle")
    assert parsed.destination is not None and parsed.destination.target is not None
    assert parsed.destination.target.noun == "sugar box"
    parsed = parse_instruction("hand me the clamp, holding it by the jaws")
    assert (parsed.task, parsed.object.noun, parsed.part) == (TASK_HANDOVER, "clamp", "jaws")
    parsed = parse_instruction("rotate the mustard bottle at the cap by 90 degrees clockwise")
    assert (parsed.object.noun, parsed.part) == ("mustard bottle", "cap")
    assert parsed.angle_rad == pytest.approx(-math.pi / 2)
    # a part word followed by "of" names a place: still a destination
    parsed = parse_instruction("put the mug by the side of the bowl")
    assert parsed.part is None and parsed.destination is not None
    assert parsed.destination.relation == "next_to"
    assert parse_instruction("put the mug by the bowl").part is None


@pytest.mark.parametrize(("text", "needle"), [
    ("", "empty"), ("   \n\t", "empty"), ("lift the mug " * 40, "too long"),
    ("the mug is nice", "no task"), ("hello there", "no task"),
    ("lift it", "no object"), ("put the mug", "no destination"),
])
def test_refusals(text: str, needle: str) -> None:
    with pytest.raises(InstructionError, match=needle):
        parse_instruction(text)
