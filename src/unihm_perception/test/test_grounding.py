"""Object selection: synonyms, attribute tie-breaks, destinations and not-found messages."""

import time

import numpy as np
import pytest

from unihm_perception.grounding import (
    Candidate,
    ObjectNotFoundError,
    TextEmbedder,
    color_name,
    resolve_destination,
    select_object,
)
from unihm_perception.instructions import parse_instruction


@pytest.fixture(scope="module")
def embedder() -> TextEmbedder:
    e = TextEmbedder()
    e.embed(["warm up"])
    return e


MUSTARD = Candidate("006_mustard_bottle", "mustard bottle", (0.9, 0.8, 0.1), (0.5, 0.1, 0.095),
                    (0.06, 0.09, 0.19))
BOWL = Candidate("024_bowl", "bowl", (0.8, 0.3, 0.2), (0.6, -0.2, 0.03), (0.16, 0.16, 0.06))
SOUP = Candidate("005_tomato_soup_can", "tomato soup can", (0.7, 0.1, 0.1), (0.4, -0.1, 0.05),
                 (0.07, 0.07, 0.1))
SUGAR = Candidate("004_sugar_box", "sugar box", (0.9, 0.9, 0.8), (0.7, 0.25, 0.09),
                  (0.09, 0.04, 0.18))
BRICK = Candidate("061_foam_brick", "foam brick", (0.8, 0.1, 0.1), (0.45, 0.3, 0.025),
                  (0.05, 0.075, 0.05))
SCENE = [MUSTARD, BOWL, SOUP, SUGAR, BRICK]


def _mug(color: tuple[float, float, float], y: float, size: float = 1.0) -> Candidate:
    return Candidate("025_mug", "mug", color, (0.5, y, 0.04),
                     (0.09 * size, 0.12 * size, 0.08 * size))


@pytest.mark.parametrize(("text", "expected"), [
    ("pick up the French's and put it in the bowl", MUSTARD),
    ("lift the mustard", MUSTARD),
    ("grab the yellow bottle", MUSTARD),
    ("push the soup can to the left", SOUP),
    ("lift the tomato can", SOUP),
    ("hand me the sugar", SUGAR),
    ("pick up the brick", BRICK),
    ("lift the foam block", BRICK),
    ("put the bowl on the sugar box", BOWL),
])
def test_names_and_synonyms(embedder: TextEmbedder, text: str, expected: Candidate) -> None:
    sel = select_object(parse_instruction(text), SCENE, embedder)
    assert sel.candidate is expected, sel.why
    assert sel.rule.startswith("name")


def test_cup_means_mug(embedder: TextEmbedder) -> None:
    scene = [*SCENE, _mug((0.2, 0.3, 0.8), 0.0)]
    assert select_object(parse_instruction("lift the cup"), scene, embedder).candidate is scene[-1]


def test_color_left_right_and_size_break_ties(embedder: TextEmbedder) -> None:
    red, blue = _mug((0.8, 0.1, 0.1), 0.2), _mug((0.1, 0.2, 0.8), -0.2, size=1.3)
    scene = [BOWL, red, blue]
    cases = {"lift the red mug": red, "lift the blue mug": blue, "lift the mug on the left": red,
             "lift the right mug": blue, "lift the big mug": blue, "lift the smallest mug": red}
    for text, expected in cases.items():
        sel = select_object(parse_instruction(text), scene, embedder)
        assert sel.candidate is expected, (text, sel.why)
        assert "+" in sel.rule, sel.rule


def test_nearest_and_unidentified(embedder: TextEmbedder) -> None:
    near = Candidate(None, None, (0.1, 0.6, 0.2), (0.35, 0.0, 0.03), (0.05, 0.05, 0.06))
    far = Candidate(None, None, (0.1, 0.6, 0.2), (0.75, 0.0, 0.03), (0.05, 0.05, 0.06))
    scene = [BOWL, far, near]
    sel = select_object(parse_instruction("grab the green one closest to me"), scene, embedder)
    assert sel.candidate is near and sel.rule.startswith("attributes")
    # an unknown name with an attribute falls back to the unidentified objects
    sel = select_object(parse_instruction("lift the green box"), scene, embedder)
    assert sel.candidate in (near, far)


def test_unknown_object_lists_candidates(embedder: TextEmbedder) -> None:
    with pytest.raises(ObjectNotFoundError) as err:
        select_object(parse_instruction("pick up the hammer"), SCENE, embedder)
    message = str(err.value)
    for c in SCENE:
        assert c.label in message
    assert "yellow" in message and "(0.50, 0.10, 0.10)" in message


def test_destinations(embedder: TextEmbedder) -> None:
    parsed = parse_instruction("pick up the French's and put it in the bowl")
    sel = select_object(parsed, SCENE, embedder)
    dest = resolve_destination(parsed, SCENE, embedder, sel.index)
    assert dest is not None and dest.support_index == 1 and dest.relation == "in"
    np.testing.assert_allclose(dest.position[:2], BOWL.centroid[:2])
    assert dest.position[2] == pytest.approx(0.0 + 0.01 + 0.095)
    parsed = parse_instruction("put the soup can to the left of the bowl")
    dest = resolve_destination(parsed, SCENE, embedder, 2)
    assert dest is not None and dest.position[1] > BOWL.centroid[1] + 0.08
    assert dest.position[0] == pytest.approx(BOWL.centroid[0])
    dest = resolve_destination(parse_instruction("move the brick to the right side of the table"),
                               SCENE, embedder, 4)
    assert dest is not None and dest.region == "right" and dest.position[1] < -0.2
    with pytest.raises(ObjectNotFoundError, match="plate"):
        resolve_destination(parse_instruction("put the brick on the plate"), SCENE, embedder, 4)


def test_color_names() -> None:
    assert color_name((0.9, 0.8, 0.1)) == "yellow"
    assert color_name((0.8, 0.1, 0.1)) == "red"
    assert color_name((0.1, 0.2, 0.8)) == "blue"
    assert color_name((0.05, 0.05, 0.05)) == "black"


def test_embedding_cache_and_speed(embedder: TextEmbedder) -> None:
    assert embedder.load_seconds is not None and embedder.load_seconds < 30
    v = embedder.embed(["mustard bottle", "a phrase never seen before"])
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-6)
    start = time.perf_counter()
    embedder.embed(["mustard bottle"])
    assert time.perf_counter() - start < 0.01  # cached
    assert embedder.similarity("mug", "cup") > embedder.similarity("mug", "banana")
