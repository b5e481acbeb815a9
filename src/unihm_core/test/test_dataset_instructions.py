"""Dataset instruction templates: every sentence means what it was generated for.

The decisive check replays instructions through perception's rule parser (the one the live
pipeline and the planner use): task, object noun, destination, angle, height and grasp part
must come back as generated, for all tasks x catalog objects x both phrasing sets, exhaustively
for one parameter set each and over many seeds with random parameters.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import pytest

from unihm_core.dataset import instructions as di
from unihm_core.dataset.instructions import (
    HELDOUT,
    PHRASINGS,
    SEEN,
    SHARED_RELATION_PHRASES,
    AnnotationRequest,
    Destination,
    TaskSpec,
    generate_instructions,
)
from unihm_core.objects import ASSET_OBJECT_IDS, OBJECTS, UnknownPartError, get_object
from unihm_core.tasks import (
    TASK_HANDOVER,
    TASK_LIFT,
    TASK_PICK_AND_PLACE,
    TASK_PUSH,
    TASK_ROTATE,
    TASKS,
)

parser = pytest.importorskip("unihm_perception.instructions")

_DROP = {*parser.COLOR_WORDS, *parser.SIZE_WORDS, "the", "a", "an", "of"}
_RELATION_IDS = {"next_to", "left_of", "right_of", "in_front_of", "behind", "to"}


def _nouns(object_id: str) -> set[str]:
    """What the parser may leave as the noun: each name without colour/size words."""
    names = get_object(object_id).names
    return {" ".join(w for w in n.split() if w not in _DROP) for n in names}


def _check(text: str, spec: TaskSpec) -> None:
    """``text`` parses back to ``spec``: task, object, destination, angle, height, part."""
    got = parser.parse_instruction(text)
    assert got.task == spec.task, text
    assert got.object.noun in _nouns(spec.object_id), text
    assert set(got.object.attributes.colors) <= {get_object(spec.object_id).color}, text
    part = spec.grasp_part()
    assert got.part is None if part is None else got.part in part.words, text
    dest = spec.target
    if spec.task in (TASK_PICK_AND_PLACE, TASK_PUSH):
        assert dest is not None and got.destination is not None, text
        if dest.region is not None:
            assert (got.destination.relation, got.destination.region) == ("region",
                                                                          dest.region), text
        else:
            assert got.destination.relation == dest.relation, text
            assert got.destination.target.noun in _nouns(dest.reference or ""), text
    if spec.task == TASK_ROTATE and spec.angle_deg is not None:
        assert got.angle_rad == pytest.approx(math.radians(spec.angle_deg), abs=1e-3), text
    if spec.task == TASK_LIFT and spec.height_m is not None:
        assert got.height_m == pytest.approx(spec.height_m, abs=1e-3), text


def _fixed_specs(object_id: str) -> Iterator[TaskSpec]:
    """One representative parameter set per task (parts on, so part phrases are covered)."""
    other = next(o for o in ASSET_OBJECT_IDS if o != object_id)
    part = OBJECTS[object_id].parts[0].id
    yield TaskSpec(TASK_PICK_AND_PLACE, object_id, part=part,
                   destination=Destination(relation="left_of", reference=other))
    yield TaskSpec(TASK_PICK_AND_PLACE, object_id, destination=Destination(region="center"))
    yield TaskSpec(TASK_LIFT, object_id, part=part, height_m=0.12)
    yield TaskSpec(TASK_LIFT, object_id)
    yield TaskSpec(TASK_PUSH, object_id, direction="right", distance_m=0.1)
    yield TaskSpec(TASK_PUSH, object_id, destination=Destination(relation="to", reference=other))
    yield TaskSpec(TASK_ROTATE, object_id, part=part, angle_deg=90)
    yield TaskSpec(TASK_ROTATE, object_id, angle_deg=-180)
    yield TaskSpec(TASK_ROTATE, object_id)
    yield TaskSpec(TASK_HANDOVER, object_id, part=part)


@pytest.mark.parametrize("phrasing", PHRASINGS)
@pytest.mark.parametrize("object_id", ASSET_OBJECT_IDS)
def test_every_template_sentence_parses_to_its_task(object_id: str, phrasing: str) -> None:
    for spec in _fixed_specs(object_id):
        groups = di.all_instructions(spec, phrasing)
        assert len(groups) >= 2, (spec, phrasing)  # several sentence shapes per task
        for text in (t for g in groups for t in g):
            _check(text, spec)


def _random_spec(task: str, object_id: str, rng: np.random.Generator) -> TaskSpec:
    parts = [p.id for p in OBJECTS[object_id].parts]
    part = str(rng.choice(parts)) if parts and rng.random() < 0.5 else None
    others = [o for o in ASSET_OBJECT_IDS if o != object_id]
    kwargs: dict[str, object] = {}
    if task in (TASK_PICK_AND_PLACE, TASK_PUSH):
        relations = sorted(di.RELATIONS if task == TASK_PICK_AND_PLACE else _RELATION_IDS)
        if rng.random() < 0.5:
            region = str(rng.choice(di.REGIONS))
            if task == TASK_PUSH:
                kwargs["direction"] = region
            else:
                kwargs["destination"] = Destination(region=region)
        else:
            kwargs["destination"] = Destination(relation=str(rng.choice(relations)),
                                                reference=str(rng.choice(others)))
        if task == TASK_PUSH and rng.random() < 0.6:
            kwargs["distance_m"] = float(rng.choice([0.05, 0.1, 0.125, 0.2, 0.3]))
    elif task == TASK_ROTATE and rng.random() < 0.8:
        kwargs["angle_deg"] = float(rng.choice([-180, -90, -45, 30, 45, 90, 135, 180, 22.5]))
    elif task == TASK_LIFT and rng.random() < 0.6:
        kwargs["height_m"] = float(rng.choice([0.05, 0.1, 0.15, 0.2, 0.075]))
    return TaskSpec(task, object_id, part=part, **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("phrasing", PHRASINGS)
@pytest.mark.parametrize("task", TASKS)
def test_generated_instructions_parse_over_many_seeds(task: str, phrasing: str) -> None:
    for object_id in ASSET_OBJECT_IDS:
        for seed in range(12):
            spec = _random_spec(task, object_id, np.random.default_rng([seed, len(object_id)]))
            texts = di.generate_for_spec(spec, 6, phrasing=phrasing, seed=seed)
            assert len(texts) == 6 and len({t.lower() for t in texts}) == 6
            for text in texts:
                _check(text, spec)


def test_phrasing_sets_are_disjoint() -> None:
    seen_t, held_t = di.templates(SEEN), di.templates(HELDOUT)
    seen_v, held_v = di.verbs(SEEN), di.verbs(HELDOUT)
    for task in TASKS:
        assert {t.text.lower() for t in seen_t[task]}.isdisjoint(
            t.text.lower() for t in held_t[task]), task
    all_seen = set().union(*seen_v.values())
    all_held = set().union(*held_v.values())
    assert all_seen.isdisjoint(all_held)
    seen_p, held_p = di.slot_phrases(SEEN), di.slot_phrases(HELDOUT)
    for family in seen_p:
        shared = seen_p[family] & held_p[family]
        if family == "relation":
            assert shared == SHARED_RELATION_PHRASES
        else:
            assert not shared, family


def test_every_verb_is_one_the_parser_maps_to_its_task() -> None:
    for phrasing in PHRASINGS:
        for task, words in di.verbs(phrasing).items():
            for verb in words:
                assert verb in parser.TASK_VERBS, verb
                mapped = parser.TASK_VERBS[verb]
                # lead verbs (pick up, grab, ...) start a compound the second verb decides, and
                # "bring ... to me" is a hand-over by its "to me"
                allowed = {task, TASK_LIFT} | (
                    {TASK_PICK_AND_PLACE} if task == TASK_HANDOVER else set())
                assert mapped in allowed, (task, verb)


def test_heldout_sentences_never_appear_in_seen() -> None:
    spec = TaskSpec(TASK_PICK_AND_PLACE, "025_mug",
                    destination=Destination(relation="next_to", reference="004_sugar_box"))
    seen = {t.lower() for g in di.all_instructions(spec, SEEN) for t in g}
    held = {t.lower() for g in di.all_instructions(spec, HELDOUT) for t in g}
    assert seen and held and seen.isdisjoint(held)


def test_same_seed_same_output_and_seeds_differ() -> None:
    kwargs = dict(destination="next_to:025_mug", part="cap", n=8)
    a = generate_instructions(TASK_PICK_AND_PLACE, "006_mustard_bottle", seed=3, **kwargs)
    b = generate_instructions(TASK_PICK_AND_PLACE, "006_mustard_bottle", seed=3, **kwargs)
    c = generate_instructions(TASK_PICK_AND_PLACE, "006_mustard_bottle", seed=4, **kwargs)
    d = generate_instructions(TASK_PICK_AND_PLACE, "006_mustard_bottle",
                              rng=np.random.default_rng(3), **kwargs)
    assert a == b == d
    assert a != c
    assert len(set(a)) == 8


def test_first_paraphrases_use_different_templates() -> None:
    texts = generate_instructions(TASK_HANDOVER, "025_mug", n=4, seed=0)
    firsts = {t.split()[0].lower() for t in texts}
    assert len(firsts) >= 3, texts  # round-robin over the four templates


def test_unknown_task_and_phrasing() -> None:
    with pytest.raises(di.UnknownTaskError, match="tasks: pick_and_place"):
        generate_instructions("throw", "025_mug")
    with pytest.raises(di.UnknownPhrasingError, match="seen, heldout"):
        generate_instructions(TASK_LIFT, "025_mug", phrasing="unseen")
    assert issubclass(di.UnknownTaskError, ValueError)


@pytest.mark.parametrize(("kwargs", "match"), [
    (dict(task=TASK_PICK_AND_PLACE), "needs a destination"),
    (dict(task=TASK_LIFT, angle_deg=90), "angle_deg applies to rotate only"),
    (dict(task=TASK_ROTATE, angle_deg=0), "non-zero"),
    (dict(task=TASK_ROTATE, angle_deg=math.nan), "non-zero"),
    (dict(task=TASK_LIFT, height_m=-0.1), r"height_m must be in \(0, 1.0\]"),
    (dict(task=TASK_LIFT, height_m=3.0), r"height_m must be in"),
    (dict(task=TASK_PUSH), "exactly one of direction"),
    (dict(task=TASK_PUSH, direction="up"), "unknown push direction 'up'"),
    (dict(task=TASK_PUSH, direction="left", destination="right"), "exactly one"),
    (dict(task=TASK_PUSH, destination="on:004_sugar_box"), "not pushed 'on'"),
    (dict(task=TASK_HANDOVER, destination="left"), "destination applies to"),
    (dict(task=TASK_PICK_AND_PLACE, destination="top"), "unknown region 'top'"),
    (dict(task=TASK_PICK_AND_PLACE, destination="under:004_sugar_box"), "unknown relation"),
    (dict(task=TASK_PICK_AND_PLACE, destination="next_to:025_mug"), "is the object being"),
    (dict(task=TASK_PICK_AND_PLACE, destination="left", n=-1), "non-negative"),
    (dict(task=TASK_LIFT, seed=1, rng=np.random.default_rng(1)), "not both"),
])
def test_bad_arguments_raise_value_errors(kwargs: dict[str, object], match: str) -> None:
    args = {"object_id": "025_mug", **kwargs}
    with pytest.raises(di.TaskParameterError, match=match):
        generate_instructions(**args)  # type: ignore[arg-type]


def test_task_spec_validates_and_coerces() -> None:
    spec = TaskSpec(TASK_PUSH, "025_mug", destination="behind:005_tomato_soup_can")  # type: ignore[arg-type]
    assert spec.target == Destination(relation="behind", reference="005_tomato_soup_can")
    assert TaskSpec(TASK_PUSH, "025_mug", direction="far").target == Destination(region="far")
    with pytest.raises(di.TaskParameterError, match="non-empty str"):
        TaskSpec(TASK_LIFT, "")
    with pytest.raises(di.TaskParameterError, match="needs a reference"):
        Destination.coerce("next_to:")
    with pytest.raises(di.TaskParameterError, match="either a region or a relation"):
        Destination(region="left", relation="next_to", reference="025_mug")


def test_parts_only_for_objects_that_have_them() -> None:
    texts = generate_instructions(TASK_LIFT, "025_mug", part="handle", n=3)
    assert all("handle" in t for t in texts)
    # a part word works as well as its id
    assert generate_instructions(TASK_LIFT, "025_mug", part="lip", n=1)
    with pytest.raises(di.PartError, match=r"has no part 'cap'.*handle, rim, body"):
        generate_instructions(TASK_LIFT, "025_mug", part="cap")
    with pytest.raises(di.PartError, match="no graspable parts"):
        generate_instructions(TASK_LIFT, "011_banana", part="stem")
    with pytest.raises(di.PartError, match="not in the object catalog"):
        generate_instructions(TASK_LIFT, "/meshes/kettle.obj", part="handle")
    assert issubclass(di.PartError, UnknownPartError) and issubclass(di.PartError, ValueError)
    for object_id in ASSET_OBJECT_IDS:
        assert OBJECTS[object_id].parts, object_id


def test_objects_outside_the_catalog_use_the_given_name_or_file_stem() -> None:
    texts = generate_instructions(TASK_LIFT, "/data/meshes/blue_kettle.obj", n=3, seed=1)
    assert all("the blue kettle" in t for t in texts)
    assert parser.parse_instruction(texts[0]).object.noun == "kettle"
    texts = generate_instructions(TASK_HANDOVER, "099_toy_car", n=2)
    assert all("toy car" in t for t in texts)
    texts = generate_instructions(TASK_LIFT, "x/textured_simple.obj", object_name="Thermos", n=2)
    assert all("the thermos" in t for t in texts)
    # a mesh path inside the catalog's folders is the catalog object
    texts = generate_instructions(TASK_LIFT, "ycb/025_mug/textured_simple.obj", n=6)
    assert any("cup" in t for t in texts)
    with pytest.raises(di.TaskParameterError, match="give object_name"):
        generate_instructions(TASK_LIFT, "123")


def test_destination_reference_outside_the_catalog() -> None:
    texts = generate_instructions(TASK_PICK_AND_PLACE, "025_mug", n=4,
                                  destination=Destination(relation="in", reference="024_bowl"))
    for text in texts:
        got = parser.parse_instruction(text)
        assert got.destination.relation == "in" and got.destination.target.noun in {"bowl",
                                                                                      "dish"}
    texts = generate_instructions(TASK_PICK_AND_PLACE, "025_mug", n=2,
                                  destination=Destination(relation="on", reference="tray_7",
                                                          reference_name="serving tray"))
    assert all(t.endswith("the serving tray") for t in texts)


def test_asking_for_more_than_the_templates_make() -> None:
    spec = TaskSpec(TASK_LIFT, "061_foam_brick")
    available = di.count_instructions(spec, SEEN)
    assert len(di.generate_for_spec(spec, available, seed=0)) == available
    with pytest.raises(di.NotEnoughParaphrasesError, match=f"templates make {available}"):
        di.generate_for_spec(spec, available + 1)
    assert di.generate_for_spec(spec, 0) == []


def test_annotators_run_only_when_asked_and_are_filtered() -> None:
    calls: list[AnnotationRequest] = []

    def echo(request: AnnotationRequest) -> list[str]:
        calls.append(request)
        return ["lift the mug high up", "  lift   the mug  ", request.instructions[0], 7, "x" * 400]

    di.register_annotator("test-echo", echo)
    try:
        plain = generate_instructions(TASK_LIFT, "025_mug", n=3, seed=2)
        assert not calls
        with pytest.raises(ValueError, match="already registered"):
            di.register_annotator("test-echo", echo)
        out = generate_instructions(TASK_LIFT, "025_mug", n=3, seed=2, annotators=["test-echo"])
        assert out[:3] == plain and calls and calls[0].n == 3 and calls[0].phrasing == SEEN
        extra = out[3:]
        assert "Lift the mug high up" in extra  # cleaned and new
        assert all(len(t) <= di.MAX_ANNOTATION_CHARS for t in extra)
        assert len({t.lower() for t in out}) == len(out)  # nothing repeated
        checked = generate_instructions(
            TASK_LIFT, "025_mug", n=3, seed=2, annotators=[echo],
            validate=lambda t: parser.parse_instruction(t).object.noun == "mug")
        assert "Lift the mug high up" not in checked  # "mug high up" is not the mug
        assert "test-echo" in di.available_annotators()
    finally:
        di.unregister_annotator("test-echo")
    with pytest.raises(di.UnknownAnnotatorError, match=r"unihm\.instruction_annotators"):
        generate_instructions(TASK_LIFT, "025_mug", annotators=["test-echo"])

    def broken(request: AnnotationRequest) -> list[str]:
        raise ConnectionError("offline")

    with pytest.raises(di.AnnotatorError, match=r"broken.*offline"):
        generate_instructions(TASK_LIFT, "025_mug", annotators=[broken])


def test_catalog_is_the_one_source_for_perception() -> None:
    grounding = pytest.importorskip("unihm_perception.grounding")
    scene = pytest.importorskip("unihm_perception.scene")
    assert grounding.OBJECT_SYNONYMS["025_mug"] == ("mug", OBJECTS["025_mug"].synonyms)
    assert tuple(scene.YCB_OBJECTS) == ASSET_OBJECT_IDS
    assert parser.TASKS == TASKS
    masses = {"004_sugar_box": 0.514, "005_tomato_soup_can": 0.349,
              "006_mustard_bottle": 0.603, "025_mug": 0.118, "051_large_clamp": 0.125,
              "061_foam_brick": 0.028}
    for object_id, mass in masses.items():
        entry = OBJECTS[object_id]
        assert entry.mass_kg == mass and entry.rgba is not None
        assert entry.color in parser.COLOR_WORDS
    for entry in OBJECTS.values():
        for part in entry.parts:
            assert part.words and all(w.islower() for w in part.words)


def test_catalog_lookups() -> None:
    from unihm_core import objects

    with pytest.raises(objects.UnknownObjectError, match="unknown object '999_x'; the catalog"):
        objects.get_object("999_x")
    assert objects.catalog_id("a/b/061_foam_brick/textured_simple.obj") == "061_foam_brick"
    assert objects.catalog_id("061_foam_brick.obj") == "061_foam_brick"
    assert objects.catalog_id("kettle.obj") is None
    assert objects.fallback_name("/m/099_Toy-Car.stl") == "toy car"
    assert objects.fallback_name("x/green_kettle/textured_simple.obj") == "green kettle"
    assert objects.get_object("025_mug").part("LIP").id == "rim"
    assert {"handle", "rim", "cap", "neck", "jaws", "sides", "top"} <= set(objects.PART_WORDS)
