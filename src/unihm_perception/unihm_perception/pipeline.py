"""One RGB-D frame and an instruction -> the instructed object's cloud, pose and target trajectory.

The stages are plug-ins (a :class:`~unihm_perception.segmentation.Segmenter`, an
:class:`~unihm_perception.registration.ObjectLibrary`, a
:class:`~unihm_core.target_planner.TrajectoryPlanner`); the defaults are the CPU ones of this
package. Identification is language-first: the object and destination phrases are matched to
library labels by sentence embedding before any registration, and clusters are registered only
against those models (all of them when the phrase names nothing the library knows). A named
model that fits its cluster confidently keeps it without registering the rest of the library
there, and an object named by attributes alone ("the red one on the left") is chosen before
any registration when the attributes single it out; only the chosen cluster is then
identified. That keeps a frame within its time budget (150 ms on two cores).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from unihm_core.dataset.sequences import Timing
from unihm_core.object_model import estimate_outward_normals
from unihm_core.target_planner import (
    Obstacle,
    PlannedTrajectory,
    PlannerParams,
    PlanRequest,
    TaskPlanner,
    TrajectoryPlanner,
)
from unihm_core.trajectory import hold_ends
from unihm_perception.camera import CameraIntrinsics, depth_to_points
from unihm_perception.grounding import (
    Candidate,
    DestinationTarget,
    ObjectNotFoundError,
    Selection,
    TextEmbedder,
    Workspace,
    name_scores,
    resolve_destination,
    select_object,
    single_by_attributes,
)
from unihm_perception.instructions import Instruction, ObjectPhrase, parse_instruction
from unihm_perception.registration import (
    DepthView,
    Match,
    ObjectLibrary,
    ObservedCluster,
    RegistrationParams,
    complete_cloud,
    observe,
    register,
)
from unihm_perception.segmentation import Cluster, DbscanSegmenter, Segmenter, TablePlane

FloatArray = NDArray[np.float64]


@dataclass(frozen=True)
class PerceptionParams:
    """Thresholds of the pipeline (units: metres; scores as in registration)."""

    min_depth: float = 0.1
    max_depth: float = 3.0
    stride: int = 1  # back-project every n-th pixel (2 quarters the work)
    accept_score: float = 0.35  # a registration below this leaves the cluster unidentified
    accept_fitness: float = 0.5
    duplicate_score: float = 0.8  # a second cluster may carry an already used label above this
    snap_to_table: float = 0.02  # m: a resting object this close to the table starts on it
    name_threshold: float = 0.62  # phrase <-> library label similarity to restrict registration
    size_margin: float = 0.01  # m: a model whose diameter is this much below a cluster's is skipped
    confident_score: float = 0.9
    """A named model scoring at least this on a cluster keeps it without the identity check
    against the rest of the library: it explains nearly every observed point and nearly all of
    its own visible side, which no other shape does (over the 50 evaluation scenes the best
    other model scored at most 0.76 on such a cluster). ``inf`` checks every cluster."""
    first_confident: bool = True
    """A model named by a phrase without attributes ("the sugar box") is registered on the
    clusters nearest the robot first, and no further once it fits one with a score of at least
    ``confident_score``; clusters another named model already fits that well are skipped.
    Only a second copy of the object could be missed, and the choice among copies goes to the
    one nearest the robot either way. A phrase with attributes ("the sugar box on the left")
    has every cluster tried."""
    rest_before_s: float = field(default_factory=lambda: Timing().object_rest_s()[0])
    """Seconds the target holds the object at its start before the planned motion, and
    ``rest_after_s`` at its end after it: the time a hand needs to reach, pre-shape and close
    on the object, and to let go and retreat. The generator was trained on dataset sequences
    with these rest phases around every motion (``Timing``), so its target needs them: without
    them the object lifts off while the hand is still 10-15 cm away (measured on the rendered
    tabletop scene) and no grasp is generated."""
    rest_after_s: float = field(default_factory=lambda: Timing().object_rest_s()[1])
    attributes_first: bool = True
    """An object named by attributes only ("the red one on the left") is chosen among the
    unidentified clusters first, when the attributes single one out, and only that cluster
    (and the destination's named models) is registered; otherwise every model is registered
    on every cluster before choosing."""


class FrameRegistrations:
    """The registrations of one frame's clusters, each cluster thinned once and each
    (cluster, model) pair registered at most once.

    A model is skipped for a cluster (no match) when the cluster is wider than the model's
    bounding-box diagonal plus ``size_margin``: the model cannot hold the points it would
    have to explain.

    :meth:`best` (the identity check of a cluster against the whole library) first registers
    the other models quickly, from the resting guesses only (no features, no half turns, one
    fine ICP), and registers a model fully only when that quick match beats the best full one.
    """

    def __init__(self, library: ObjectLibrary, params: RegistrationParams,
                 clusters: list[Cluster], *, table: TablePlane | None = None,
                 view: DepthView | None = None, size_margin: float = 0.01) -> None:
        self.library, self.params, self.clusters = library, params, clusters
        self.table, self.view, self.size_margin = table, view, size_margin
        self._observed: dict[int, ObservedCluster] = {}
        self._matches: dict[tuple[int, str], Match | None] = {}
        self._quick: dict[tuple[int, str], Match | None] = {}
        self.quick_params = replace(params, use_features=False, flips=False, refine=1)

    @property
    def registered(self) -> int:
        """How many (cluster, model) registrations ran."""
        return sum(m is not None for m in self._matches.values())

    def observed(self, c: int) -> ObservedCluster:
        if c not in self._observed:
            self._observed[c] = observe(self.clusters[c].points, self.params, table=self.table,
                                        view=self.view)
        return self._observed[c]

    def match(self, c: int, object_id: str, quick: bool = False) -> Match | None:
        """Model ``object_id`` registered to cluster ``c`` (None: too small to be it);
        ``quick`` registers from the resting guesses only, unless a full match is known."""
        key = (c, object_id)
        if key in self._matches:
            return self._matches[key]
        cache = self._quick if quick else self._matches
        if key not in cache:
            observed = self.observed(c)
            model = self.library.prepared(object_id, self.params)
            if observed.diameter > model.diameter + self.size_margin:
                cache[key] = None
            else:
                cache[key] = register(observed, self.library, object_id,
                                      self.quick_params if quick else self.params)
        return cache[key]

    def model_on_clusters(self, object_id: str, *, order: list[int] | None = None,
                          enough: float | None = None,
                          skip: set[int] | None = None) -> list[Match | None]:
        """One model on every cluster: quick registrations first, the full one (features,
        half turns) where the model fits, or everywhere when it fits nowhere (an object
        lying on its side).

        Clusters are visited in ``order`` (default: as segmented); with ``enough`` the visit
        stops at the first cluster the model fits with a quick score of at least that, and
        the clusters not visited, like those in ``skip``, get no match."""
        skip = skip or set()
        quick: list[Match | None] = [None] * len(self.clusters)
        for c in range(len(self.clusters)) if order is None else order:
            if c in skip:
                continue
            quick[c] = match = self.match(c, object_id, quick=True)
            if enough is not None and match is not None and self.plausible(match) and \
                    match.score >= enough:
                break
        fits = [m is not None and self.plausible(m) for m in quick]
        return [self.match(c, object_id) if (fits[c] or not any(fits)) and c not in skip
                else m for c, m in enumerate(quick)]

    def plausible(self, match: Match) -> bool:
        """Whether a match fits well enough to be the object (then features are not tried)."""
        return match.fitness * (1.0 - match.seen_through) >= self.params.feature_trigger

    def best(self, c: int) -> Match | None:
        """The best-scoring library model for cluster ``c`` (see the class docstring)."""
        def rank(m: Match) -> tuple[float, float]:
            return (m.score, m.fitness)

        full = [m for object_id in self.library.ids
                if (c, object_id) in self._matches and (m := self._matches[c, object_id])]
        best = max(full, key=rank) if full else None
        quick = [m for object_id in self.library.ids
                 if (c, object_id) not in self._matches
                 and (m := self.match(c, object_id, quick=True)) is not None]
        for candidate in sorted(quick, key=rank, reverse=True):
            if best is not None and rank(candidate) <= rank(best):
                break
            match = self.match(c, candidate.object_id)
            if match is not None and (best is None or rank(match) > rank(best)):
                best = match
        return best


@dataclass
class SceneObject:
    """A cluster, and the library model registered to it when one was accepted."""

    cluster: Cluster
    match: Match | None
    candidate: Candidate


@dataclass
class PerceptionResult:
    """What the rest of the pipeline needs, plus what explains it."""

    instruction: Instruction
    objects: list[SceneObject]
    selection: Selection
    object_id: str | None
    label: str | None
    pose: FloatArray  # 4x4 planning_from_object (model frame when identified, else centroid)
    fitness: float  # registration fitness (0 when unidentified)
    cloud_points: FloatArray  # (N, 3) planning frame (completed from the model when identified)
    cloud_normals: FloatArray  # (N, 3) outward
    destination: DestinationTarget | None
    trajectory: PlannedTrajectory  # the planner's result (its poses move the object's box)
    target_poses: FloatArray  # (T, 4, 4) T_tar(t): the object (pose's frame) along it
    timings_ms: dict[str, float] = field(default_factory=dict)

    @property
    def selected(self) -> SceneObject:
        return self.objects[self.selection.index]


class Perception:
    """The default perception front end (see the module docstring)."""

    def __init__(self, library: ObjectLibrary | None = None, *,
                 segmenter: Segmenter | None = None,
                 planner: TrajectoryPlanner | None = None, embedder: TextEmbedder | None = None,
                 params: PerceptionParams | None = None,
                 registration: RegistrationParams | None = None) -> None:
        self.library = library or ObjectLibrary.default()
        self.registration = registration or RegistrationParams()
        self.segmenter = segmenter or DbscanSegmenter()
        self.planner = planner or TaskPlanner()
        self.embedder = embedder or TextEmbedder()
        self.params = params or PerceptionParams()
        self._library_candidates = [
            Candidate(object_id, self.library[object_id].label, (0.0, 0.0, 0.0),
                      (0.0, 0.0, 0.0), (0.0, 0.0, 0.0)) for object_id in self.library.ids]

    def warm_up(self) -> None:
        """Load the embedding model and prepare the library (first-frame costs, ~3 s)."""
        self.embedder.embed(["warm up"])
        for object_id in self.library.ids:
            self.library.prepared(object_id, self.registration)

    # ---------------------------------------------------------------------------- stages
    def _phrase_ids(self, phrase: ObjectPhrase) -> list[str]:
        """Library ids whose label or synonyms the phrase's name matches."""
        scores, _ = name_scores(phrase, self._library_candidates, self.embedder)
        return [c.id for c, s in zip(self._library_candidates, scores, strict=True)
                if s >= self.params.name_threshold and c.id is not None]

    def _named_ids(self, instruction: Instruction) -> list[str] | None:
        """Library ids the instruction's object and destination phrases name (None: no
        phrase names a library object, so every model is tried)."""
        phrases = [instruction.object]
        if instruction.destination is not None and instruction.destination.target is not None:
            phrases.append(instruction.destination.target)
        named: list[str] = []
        for phrase in phrases:
            if not phrase.noun:  # "the red one": colour words alone name no model
                return None
            named += self._phrase_ids(phrase)
        return list(dict.fromkeys(named)) or None

    def _unqualified_ids(self, instruction: Instruction) -> frozenset[str]:
        """Library ids named only by phrases without attributes ("the sugar box", not "the
        sugar box on the left"): for those, the first confident cluster is the answer."""
        phrases = [instruction.object]
        if instruction.destination is not None and instruction.destination.target is not None:
            phrases.append(instruction.destination.target)
        plain: set[str] = set()
        qualified: set[str] = set()
        for phrase in phrases:
            if phrase.noun:
                (qualified if phrase.attributes else plain).update(self._phrase_ids(phrase))
        return frozenset(plain - qualified)

    def _attribute_first_ids(self, instruction: Instruction) -> list[str] | None:
        """For an object named by attributes only: the library ids the destination names
        (none without a destination object). None where choosing first does not apply: the
        object phrase has a noun, or the destination names no library object (every cluster
        is then identified, so that the error lists what was seen)."""
        phrase = instruction.object
        if not self.params.attributes_first or phrase.noun or not phrase.attributes:
            return None
        destination = instruction.destination
        if destination is None or destination.target is None:
            return []
        if not destination.target.noun:
            return None
        return list(dict.fromkeys(self._phrase_ids(destination.target))) or None

    def _identify(self, clusters: list[Cluster], named: list[str] | None,
                  regs: FrameRegistrations,
                  stop_early: frozenset[str] = frozenset()) -> list[SceneObject]:
        """Register clusters to models, then give each model to the cluster it fits best: a
        tabletop rarely holds two copies of one object, and a small model also fits part of
        a big object, so per-cluster maxima alone would label several clusters alike. A
        second copy keeps the label only with a near-perfect fit (``duplicate_score``).
        ``stop_early``: named models registered nearest cluster first until a confident fit
        (see ``PerceptionParams.first_confident``)."""
        p = self.params
        pairs: list[tuple[float, int, Match]] = []
        nearest_first = sorted(range(len(clusters)), key=lambda c: float(np.hypot(
            *(clusters[c].points[:, :2].min(axis=0) + clusters[c].points[:, :2].max(axis=0))
            / 2)))
        taken: set[int] = set()  # clusters a named model fits with a confident score
        for object_id in named if named is not None else self.library.ids:
            shortcut = p.first_confident and object_id in stop_early
            matches = regs.model_on_clusters(
                object_id, order=nearest_first if shortcut else None,
                enough=p.confident_score if shortcut else None,
                skip=taken if shortcut else None)
            for c, match in enumerate(matches):
                if match is not None and match.score >= p.accept_score and \
                        match.fitness >= p.accept_fitness:
                    pairs.append((match.score, c, match))
                    if named is not None and match.score >= p.confident_score:
                        taken.add(c)
        pairs.sort(key=lambda item: item[0], reverse=True)
        assigned: dict[int, Match] = {}
        used: set[str] = set()
        for score, c, match in pairs:
            if c in assigned or (match.object_id in used and score < p.duplicate_score):
                continue
            if named is not None and score < p.confident_score:
                # a named model also fits part of a similar object: the cluster keeps the
                # name only if no other library model explains it better (registering the
                # others is most of a frame's cost, hence only below ``confident_score``)
                best = regs.best(c)
                assert best is not None  # at least ``match`` itself
                if best.object_id != match.object_id and best.score > score:
                    if best.score >= p.accept_score and best.fitness >= p.accept_fitness:
                        assigned[c] = best
                        used.add(best.object_id)
                    continue
            assigned[c] = match
            used.add(match.object_id)
        for c, match in assigned.items():  # the kept labels' poses from full registrations
            full = regs.match(c, match.object_id)
            if full is not None and full.score >= p.accept_score and \
                    full.fitness >= p.accept_fitness:
                assigned[c] = full
        return [self._scene_object(cluster, assigned.get(c)) for c, cluster in enumerate(clusters)]

    @staticmethod
    def _scene_object(cluster: Cluster, match: Match | None) -> SceneObject:
        """A cluster as a grounding candidate: colour, box centre and extent from its points,
        id and label from its match."""
        lo, hi = cluster.points.min(axis=0), cluster.points.max(axis=0)
        color = tuple(cluster.mean_color) if cluster.mean_color is not None else (0.5,) * 3
        candidate = Candidate(
            match.object_id if match else None, match.label if match else None,
            tuple(float(v) for v in color), tuple(float(v) for v in (lo + hi) / 2),
            tuple(float(v) for v in hi - lo))
        return SceneObject(cluster, match, candidate)

    def _identify_one(self, obj: SceneObject, regs: FrameRegistrations,
                      index: int) -> SceneObject:
        best = regs.best(index)
        if best is None or best.score < self.params.accept_score or \
                best.fitness < self.params.accept_fitness:
            return obj
        c = obj.candidate
        return SceneObject(obj.cluster, best,
                           Candidate(best.object_id, best.label, c.color, c.centroid, c.extent))

    def _registrations(self, clusters: list[Cluster], view: DepthView) -> FrameRegistrations:
        """The frame's registration cache (a hook for variants that register differently)."""
        return FrameRegistrations(self.library, self.registration, clusters,
                                  table=getattr(self.segmenter, "table", None), view=view,
                                  size_margin=self.params.size_margin)

    def _workspace(self, points: FloatArray) -> Workspace:
        """Named regions ("the left side of the table") refer to the table seen."""
        table = getattr(self.segmenter, "table", None)
        if table is None or len(table.inliers) == 0:
            return Workspace()
        x, y = points[table.inliers, 0], points[table.inliers, 1]
        return Workspace(float(x.min()), float(x.max()), float(y.min()), float(y.max()),
                         float(np.median(points[table.inliers, 2])))

    # ---------------------------------------------------------------------------- perceive
    def perceive(self, color: ArrayLike | None, depth_m: ArrayLike,
                 intrinsics: CameraIntrinsics, camera_pose: ArrayLike,
                 instruction: str) -> PerceptionResult:
        """Run every stage on one frame. Raises InstructionError for an unusable instruction,
        TableNotFoundError without a table, ObjectNotFoundError (listing what was seen) when
        nothing matches, PlanningError when no collision-free trajectory exists."""
        clock = time.perf_counter()
        timings: dict[str, float] = {}

        def lap(name: str) -> None:
            nonlocal clock
            now = time.perf_counter()
            timings[name] = round(1000.0 * (now - clock), 2)
            clock = now

        parsed = parse_instruction(instruction)
        named = self._named_ids(parsed)
        lap("language")
        camera_pose = np.asarray(camera_pose, dtype=np.float64)
        cloud = depth_to_points(np.asarray(depth_m), intrinsics,
                                None if color is None else np.asarray(color),
                                min_depth=self.params.min_depth, max_depth=self.params.max_depth,
                                stride=self.params.stride, extrinsics=camera_pose)
        if len(cloud.points) == 0:
            raise ObjectNotFoundError("the depth image has no valid pixels in range; "
                                      "objects seen: none")
        lap("points")
        clusters = self.segmenter.segment(cloud.points, cloud.colors)
        if not clusters:
            raise ObjectNotFoundError("no object stands on the table; objects seen: none")
        lap("segmentation")
        view = DepthView(np.asarray(depth_m, dtype=np.float64), intrinsics, camera_pose)
        regs = self._registrations(clusters, view)
        first = self._attribute_first_ids(parsed) if named is None else None
        if first is not None and single_by_attributes(
                parsed.object, [self._scene_object(c, None).candidate for c in clusters]) is None:
            first = None  # the attributes leave a tie that labels would break
        lazy = named if first is None else first  # models registered on every cluster
        objects = self._identify(clusters, lazy, regs, self._unqualified_ids(parsed))
        lap("registration")
        candidates = [o.candidate for o in objects]
        selection = select_object(parsed, candidates, self.embedder)
        destination = None
        if parsed.destination is not None:
            destination = resolve_destination(parsed, candidates, self.embedder, selection.index,
                                              workspace=self._workspace(cloud.points))
        lap("grounding")
        chosen = objects[selection.index]
        if chosen.match is None and lazy is not None:
            # chosen by attributes among clusters registered to other models only (or to
            # none): identify it against the whole library now, for its pose and cloud
            chosen = self._identify_one(chosen, regs, selection.index)
            objects[selection.index] = chosen
        if chosen.match is not None:
            pose = np.asarray(chosen.match.pose, dtype=np.float64)
            points, normals = complete_cloud(chosen.match, self.library)
        else:
            pose = np.eye(4)
            pose[:3, 3] = chosen.cluster.center
            points = chosen.cluster.points
            normals = estimate_outward_normals(points)
        lap("object_cloud")
        trajectory, target_poses = self._with_rest(*self._plan(
            parsed, objects, selection.index, pose, destination))
        lap("planning")
        timings["total"] = round(sum(timings.values()), 2)
        return PerceptionResult(
            parsed, objects, selection, chosen.candidate.id, chosen.candidate.label, pose,
            float(chosen.match.fitness) if chosen.match else 0.0, points, normals, destination,
            trajectory, target_poses, timings)

    def _with_rest(self, trajectory: PlannedTrajectory, target_poses: FloatArray
                   ) -> tuple[PlannedTrajectory, FloatArray]:
        """The planned motion with the object at rest before and after it (``rest_before_s``,
        ``rest_after_s``), on the planner's time step."""
        times = np.asarray(trajectory.times, dtype=np.float64)
        dt = (float(np.median(np.diff(times))) if times.size > 1
              else 1.0 / PlannerParams().rate_hz)
        before = round(self.params.rest_before_s / dt)
        after = round(self.params.rest_after_s / dt)
        poses = hold_ends(trajectory.poses, before, after)
        padded = replace(trajectory, poses=poses,
                         times=times[0] + dt * np.arange(poses.shape[0], dtype=np.float64))
        return padded, hold_ends(target_poses, before, after)

    def _box(self, chosen: SceneObject) -> tuple[FloatArray, FloatArray]:
        """The object's bounding box in its own frame: centre offset (3,) and size (3,).

        Planners move a box centred on the pose they are given; a library model's origin is
        wherever its mesh file put it, so planning happens in a frame at the box centre and
        the result is mapped back to the model frame."""
        if chosen.match is None:
            return np.zeros(3), np.asarray(chosen.candidate.extent, dtype=np.float64)
        points = self.library[chosen.match.object_id].model.points
        lo, hi = points.min(axis=0), points.max(axis=0)
        return (lo + hi) / 2, hi - lo

    def _plan(self, parsed: Instruction, objects: list[SceneObject], index: int,
              pose: FloatArray, destination: DestinationTarget | None
              ) -> tuple[PlannedTrajectory, FloatArray]:
        """The planned box trajectory and the object (model-frame) poses along it."""
        obstacles: dict[int, Obstacle] = {
            i: Obstacle(o.candidate.centroid, o.candidate.extent,
                        o.candidate.label or f"object {i}")
            for i, o in enumerate(objects) if i != index}
        support = None
        if destination is not None and destination.support_index is not None:
            support = obstacles.get(destination.support_index)
        centre, size = self._box(objects[index])
        box_from_object = np.eye(4)
        box_from_object[:3, 3] = -centre
        box_pose = pose.copy()
        box_pose[:3, 3] = pose[:3, :3] @ centre + pose[:3, 3]
        goal: Any = None
        if destination is not None:
            # the destination is where the observed centre should end; the box may be taller
            # or shorter than what the camera saw: keep its bottom where the observation's is
            goal = np.asarray(destination.position, dtype=np.float64).copy()
            observed_half = 0.5 * float(objects[index].candidate.extent[2])
            box_half = 0.5 * float(np.abs(pose[2, :3]) @ size)
            goal[2] += box_half - observed_half
        planner = self.planner
        table = getattr(self.segmenter, "table", None)
        if table is not None:
            # registration leaves a resting object a few mm off the table plane: start it on
            # the plane (within ``snap_to_table``), and plan against the table actually seen
            half_z = 0.5 * float(np.abs(box_pose[2, :3]) @ size)
            bottom = box_pose[:3, 3] - np.array([0.0, 0.0, half_z])
            height = float(table.height(bottom[None])[0])
            if abs(height) <= self.params.snap_to_table:
                box_pose[2, 3] -= height
            if isinstance(planner, TaskPlanner):
                table_z = float(table.project(bottom[None])[0, 2])
                planner = TaskPlanner(replace(planner.params, table_z=table_z))
        request = PlanRequest(parsed.task, box_pose, size, goal, tuple(obstacles.values()),
                              support, parsed.angle_rad, parsed.height_m)
        planned = planner.plan(request)
        return planned, planned.poses @ box_from_object
