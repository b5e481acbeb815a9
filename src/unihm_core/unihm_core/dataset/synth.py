"""`unihm data synth`: physically validated manipulation sequences for every hand type.

Two stages, each spread over a process pool:

1. Per object, a grasp bank: grasps of the reference hand found by optimization
   (:mod:`.grasp_synthesis`), retargeted to every other hand through the human-like keypoints
   (:mod:`.reference`), polished per hand with the same energies, seated per hand in MuJoCo
   (the fingers squeeze and the grasp is read back touching the surface), kept only when the
   seated contacts can carry the object (the support tests of :func:`_candidate`: contact
   normals, lift capacity, depth; a hand's own synthesized grasps replace retargeted ones
   that fail them) and checked per hand (:mod:`.physics`: held against gravity while the
   hand lifts 10 cm). A hand whose version of a grasp fails the check is left out of the
   sequences that use that grasp.
2. Per sequence: a random placement on the table, a task and its planned object motion, a grasp
   from the bank, the composed motion of every hand that passed (:mod:`.sequences`), contact
   labels and instruction paraphrases; written as one file (:mod:`.format`).

Every random choice derives from the seed and the object / sequence number (not from the worker
that happens to run it), so the same command gives the same dataset with any worker count.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np

from unihm_core.dataset.format import SEQUENCE_SUFFIX, SequenceRecord, save_sequence
from unihm_core.dataset.index import SEQUENCE_DIR, DatasetWriter, IndexEntry
from unihm_core.dataset.motion import hand_motion
from unihm_core.dataset.objects_source import ObjectSource, resolve_object
from unihm_core.dataset.reference import (
    REFERENCE_HAND,
    mirror_wrist,
    mirrors_reference,
    retarget_keyframes,
    symmetry_plane,
)
from unihm_core.dataset.sequences import (
    HandGrasp,
    SequenceError,
    Timing,
    compose,
    plan_object_motion,
    resting_start,
    sample_task,
)
from unihm_core.hands.kinematics import hand_kinematics
from unihm_core.hands.registry import hand_ids
from unihm_core.object_model import ObjectModel
from unihm_core.se3 import FloatArray, make_pose
from unihm_core.target_planner import PlanningError, Workspace
from unihm_core.tasks import TASKS

GRASPS_FILE = "grasps.json"


@dataclass(frozen=True)
class SynthConfig:
    """Everything that determines a synthetic dataset (recorded in its index)."""

    objects: tuple[str, ...]
    num: int
    seed: int = 0
    fps: float = 30.0
    hands: tuple[str, ...] = ()
    """Empty: every registry hand."""
    reference_hand: str = REFERENCE_HAND
    grasps_per_object: int = 24
    grasp_candidates: int = 96
    tasks: tuple[str, ...] = TASKS
    unseen_objects: tuple[str, ...] = ()
    test_fraction: float = 0.1
    instructions: int = 4
    heldout_instructions: int = 2
    surface_points: int = 1024
    max_penetration_mm: float = 5.0
    """Grasps whose hand penetrates the object deeper (MuJoCo collision geometry) are filtered
    out before the lift simulation; the lift success rate is over the grasps kept."""
    min_support: float = 0.5
    """Least :func:`physics.support_score` of a seated grasp's contact normals (0.5:
    contacts tilted up by about 25 deg on average, a bottle's shoulder)..."""
    min_capacity: float = 0.75
    """...and least :func:`physics.lift_capacity` of its contacts (friction 0.5), raised for
    heavy objects and weak hands (``capacity_share``), for the grasp to be used;
    docs/dataset.md says how they were chosen."""
    choice_penetration_mm: float = 3.0
    """A grasp deeper than this (mm) is passed over like one failing the support tests
    while an alternative is left: the optimizer's sphere model misjudges some links, and
    the deepest kept grasps were the ones that slipped in the lift."""
    slip_drop: float = 0.003
    """The lift capacity is also measured with the object this much (m) lower in the hand,
    and the smaller value counts."""
    capacity_share: float = 0.22
    """Share of a hand's fingertip force one contact point is counted to press with when
    converting a weight into the lift capacity it needs (3.8 N for the Shadow hand)."""
    support_tries: int = 12
    """Own synthesized grasps a hand tries per slot before sitting the slot out..."""
    own_batches: int = 5
    """...out of at most this many batches of ``grasp_candidates`` (the next batch is only
    synthesized when the previous one is used up)."""
    workers: int = 2

    def hand_list(self) -> tuple[str, ...]:
        hands = self.hands or tuple(hand_ids())
        if self.reference_hand not in hands:
            hands = (self.reference_hand, *hands)
        return hands


@dataclass
class GraspBank:
    """One object's validated grasps: per grasp, per hand, the grasp and its physics check."""

    source: ObjectSource
    rest: FloatArray
    """The object's resting pose at the origin (upright, lowest point on the table)."""
    points: FloatArray
    normals: FloatArray
    extent: FloatArray
    grasps: list[dict[str, HandGrasp]] = field(default_factory=list)
    checks: list[dict[str, dict[str, Any]]] = field(default_factory=list)
    modes: list[str] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)

    def usable(self, reference_hand: str) -> list[int]:
        """Grasps whose reference-hand version passed (the others are retargeted from it)."""
        return [i for i, c in enumerate(self.checks) if c.get(reference_hand, {}).get("success")]


@dataclass
class SynthReport:
    sequences: int = 0
    skipped: int = 0
    seconds: float = 0.0
    grasp_seconds: float = 0.0
    sequence_seconds: float = 0.0
    per_hand: dict[str, dict[str, float]] = field(default_factory=dict)
    interrupted: bool = False

    @property
    def sequences_per_minute(self) -> float:
        return 60.0 * self.sequences / self.seconds if self.seconds > 0 else 0.0


def _child_seed(seed: int, *key: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, *key]))


def _object_model(source: ObjectSource, n_points: int, seed: int) -> ObjectModel:
    return ObjectModel.from_file(source.mesh_file, n_points=n_points, seed=seed)


def _grasp_object(source: ObjectSource) -> Any:
    """The physics check's object: the library's convex pieces and real mass, or the
    folder's pieces, or the mesh itself (MuJoCo collides with its convex hull)."""
    from unihm_core.dataset.physics import GraspObject

    if source.mesh_path.startswith("ycb_objects/"):
        return GraspObject.ycb(source.object_id)
    return GraspObject(source.object_id, source.collision_files or (source.mesh_file,))


def _seated(checker: Any, rest: FloatArray, grasp: HandGrasp) -> tuple[HandGrasp, Any]:
    """The grasp where a squeeze leaves the fingers (:meth:`LiftChecker.seat`), or the
    kinematic grasp when seating fails; and the seating's result."""
    seated = checker.seat(rest, rest @ grasp.wrist_in_object, grasp.q_grasp,
                          q_open=grasp.q_open)
    if seated.success:
        grasp = HandGrasp(seated.wrist_in_object, seated.q, grasp.q_pregrasp, grasp.q_open)
    return grasp, seated


@dataclass
class _Choice:
    """A hand's candidate for one bank slot, seated, with the analytic measures of its
    contacts (:func:`physics.support_score`, :func:`physics.lift_capacity`) and origin."""

    grasp: HandGrasp
    seated: Any
    support: float
    capacity: float
    penetration_mm: float
    origin: str
    mode: str

    def score(self, need: tuple[float, float, float]) -> float:
        """At least 1 when both measures reach ``need`` (support, capacity) and the hand is
        no deeper in the object than ``need[2]`` mm: the lowest ratio."""
        return min(self.support / need[0], self.capacity / need[1],
                   need[2] / max(self.penetration_mm, 1e-9))


def _needs(config: SynthConfig, checker: Any) -> tuple[float, float, float]:
    """The least support score and lift capacity a grasp of this checker's hand and object
    needs, and its deepest allowed penetration (mm). The capacity is in pressing forces of
    one contact point; a contact point is counted to press with ``capacity_share`` of the
    hand's fingertip force (:meth:`LiftChecker.fingertip_force`), and the grasp must carry
    the object's weight so, but never less than ``min_capacity``: the Inspire's 1 N m
    fingers need about twice the capacity of the Shadow hand's 2 N m ones."""
    need = 9.81 * checker.object_mass / (config.capacity_share * checker.fingertip_force())
    return config.min_support, max(config.min_capacity, need), config.choice_penetration_mm


def _candidate(checker: Any, rest: FloatArray, grasp: HandGrasp, origin: str,
               mode: str, *, config: SynthConfig) -> _Choice:
    """Seat a grasp and measure its seated contacts (collision geometry, no simulation).
    The lift capacity is the smaller of the grasp's and that of the same hand with the
    object ``config.slip_drop`` lower: a grasp that only holds while nothing moves (fingers
    on a top edge, a shoulder, a face that faces up) loses its contacts or their support
    when the object sinks a few millimetres into it, one on the sides or under a lip keeps
    them."""
    g, seated = _seated(checker, rest, grasp)
    wrist = rest @ g.wrist_in_object
    sunk = rest.copy()
    sunk[2, 3] -= config.slip_drop
    capacity = min(checker.lift_capacity(rest, wrist, g.q_grasp),
                   checker.lift_capacity(sunk, wrist, g.q_grasp))
    return _Choice(g, seated, float(checker.contact_support(rest, wrist, g.q_grasp)),
                   float(capacity), float(checker.penetration_mm(rest, wrist, g.q_grasp)),
                   origin, mode)


def _choose_grasps(hand_id: str, polished: list[Any], own: Callable[[int], list[Any]], *,
                   checker: Any, rest: FloatArray, config: SynthConfig
                   ) -> list[_Choice | None]:
    """Per slot, the hand's grasp: the polished retargeted one when it passes the quality
    filters of :mod:`.grasp_synthesis` and its seated contacts can carry the object
    (:meth:`_Choice.score` at least 1), else the first of the hand's own synthesized grasps
    (same mode first) that can, trying at most ``config.support_tries``; None (the hand
    sits this grasp out) when none can. Hands differ too much in size and thumb placement
    for every human-like grasp to carry over (a parallel gripper given a fingertip pinch
    from above pressed both pads onto the top face), and a grasp whose fingers rest on
    surfaces that face up, or whose contacts cannot balance the object's weight without
    turning it, does not hold it. ``own(k)`` synthesizes the hand's k-th batch of grasps
    (only when one is needed; at most ``config.own_batches``)."""
    kin = hand_kinematics(hand_id)
    need = _needs(config, checker)
    pool: list[Any] = []
    batches = 0
    out: list[_Choice | None] = []
    for p in polished:
        pick = None
        if p.passed_filters:
            c = _candidate(checker, rest,
                           HandGrasp(p.wrist_pose, p.q, p.q_pregrasp, kin.open_pose),
                           "retargeted", p.mode, config=config)
            pick = c if c.score(need) >= 1.0 else None
        tries = 0
        while pick is None and tries < config.support_tries:
            while not pool and batches < config.own_batches:
                pool = own(batches)
                batches += 1
            if not pool:
                break
            same = [k for k, g in enumerate(pool) if g.mode == p.mode]
            s = pool.pop(same[0] if same else 0)
            tries += 1
            c = _candidate(checker, rest,
                           HandGrasp(s.wrist_pose, s.q, s.q_pregrasp, kin.open_pose),
                           "synthesized", s.mode, config=config)
            pick = c if c.score(need) >= 1.0 else None
        out.append(pick)
    return out


def _reference_grasps(candidates: list[Any], checker: Any, rest: FloatArray,
                      config: SynthConfig) -> tuple[list[Any], list[_Choice]]:
    """The reference hand's grasps: the best by energy whose seated contacts can carry the
    object (see :func:`_choose_grasps`), at most ``grasps_per_object``; the best-scoring
    one alone when none can (an object needs at least one grasp)."""
    q_open = hand_kinematics(config.reference_hand).open_pose
    need = _needs(config, checker)
    found, choices, spare = [], [], []
    for cand in candidates:
        choice = _candidate(checker, rest, HandGrasp(cand.wrist_pose, cand.q,
                                                     cand.q_pregrasp, q_open),
                            "synthesized", cand.mode, config=config)
        if choice.score(need) < 1.0:
            spare.append((cand, choice))
            continue
        found.append(cand)
        choices.append(choice)
        if len(found) == config.grasps_per_object:
            break
    if not found and spare:
        cand, choice = max(spare, key=lambda s: s[1].score(need))
        return [cand], [choice]
    return found, choices


def build_grasp_bank(spec: str, config: SynthConfig, object_index: int) -> GraspBank:
    """Stage 1 for one object (runs in a worker)."""
    from unihm_core.dataset.grasp_synthesis import polish_grasps, synthesize_grasps
    from unihm_core.dataset.physics import LiftChecker, LiftParams

    tic = time.perf_counter()
    source = resolve_object(spec)
    obj = _object_model(source, max(config.surface_points, 2048), config.seed)
    table_z = float(obj.points[:, 2].min())
    rest = make_pose(None, [0.0, 0.0, -table_z])
    extent = obj.points.max(axis=0) - obj.points.min(axis=0)
    seed = int(_child_seed(config.seed, object_index).integers(2**31))
    ref = config.reference_hand
    params = LiftParams(max_penetration_mm=config.max_penetration_mm)
    checkers = {h: LiftChecker(h, _grasp_object(source), params) for h in config.hand_list()}
    kin_ref = hand_kinematics(ref)
    # More candidates than the other hands get: about a quarter of the candidates pass the
    # quality filters and a third to a half of those the support tests, and every other
    # hand starts from these grasps.
    candidates = [g for g in synthesize_grasps(ref, obj, table_z=table_z,
                                               num=4 * config.grasp_candidates, seed=seed)
                  if g.passed_filters]
    found, ref_choices = _reference_grasps(candidates, checkers[ref], rest, config)
    bank = GraspBank(source, rest, obj.points[: config.surface_points],
                     obj.normals[: config.surface_points], extent)
    bank.seconds["reference"] = time.perf_counter() - tic
    chosen: dict[str, list[_Choice | None]] = {ref: list(ref_choices)}
    reflection = symmetry_plane(obj.points)
    for hand_id in config.hand_list():
        t0 = time.perf_counter()
        if hand_id == ref:
            continue
        keyframes = [retarget_keyframes(hand_id, np.stack([kin_ref.open_pose,
                                                           g.q_pregrasp, g.q]), ref)
                     for g in found]
        # A hand of the other side grasps the mirror image of the reference grasp.
        wrists = [mirror_wrist(g.wrist_pose, reflection) if mirrors_reference(hand_id, ref)
                  else g.wrist_pose for g in found]
        polished = polish_grasps(hand_id, obj, wrists, [k[2] for k in keyframes],
                                 table_z=table_z, mode=[g.mode for g in found])
        own_seed = seed + 7919 * (1 + config.hand_list().index(hand_id))

        def own(batch: int, hand_id: str = hand_id, own_seed: int = own_seed) -> list[Any]:
            return synthesize_grasps(hand_id, obj, table_z=table_z,
                                     num=config.grasp_candidates,
                                     seed=own_seed + 104729 * batch)

        chosen[hand_id] = _choose_grasps(hand_id, polished, own, checker=checkers[hand_id],
                                         rest=rest, config=config)
        bank.seconds[f"grasp:{hand_id}"] = time.perf_counter() - t0
    for hand_id in config.hand_list():
        t0 = time.perf_counter()
        checker = checkers[hand_id]
        for i, c in enumerate(chosen[hand_id]):
            while len(bank.checks) <= i:
                bank.checks.append({})
            if c is None:  # no grasp of this hand passed the analytic support tests
                continue
            g = c.grasp
            result = checker.check(rest, rest @ g.wrist_in_object, g.q_grasp, q_open=g.q_open)
            bank.checks[i][hand_id] = {
                "success": bool(result.success), "reason": result.reason,
                "seated": bool(c.seated.success), "origin": c.origin,
                "support": round(c.support, 3), "capacity": round(c.capacity, 3),
                "kept": bool(result.penetration_mm <= config.max_penetration_mm),
                "penetration_mm": round(float(result.penetration_mm), 3),
                "backoff_m": round(float(c.seated.backoff_m), 4),
                "lift_height_m": round(float(result.lift_height), 4),
                "max_slip_m": round(float(result.max_slip_m), 4),
                "held_s": round(float(result.held_s), 3)}
        bank.seconds[f"physics:{hand_id}"] = time.perf_counter() - t0
    bank.grasps = [{h: c[i].grasp for h, c in chosen.items() if c[i] is not None}
                   for i in range(len(found))]
    bank.modes = [g.mode for g in found]
    bank.seconds["total"] = time.perf_counter() - tic
    return bank


def build_sequence(bank: GraspBank, config: SynthConfig, number: int,
                   workspace: Workspace | None = None) -> SequenceRecord:
    """Stage 2: sequence ``number`` (its object chosen by the caller) from a grasp bank."""
    from unihm_core.dataset.instructions import generate_instructions

    rng = _child_seed(config.seed, 1_000_000 + number)
    usable = bank.usable(config.reference_hand)
    if not usable:
        raise SequenceError(f"{bank.source.object_id}: no grasp passed the physics check")
    ws = workspace or Workspace()
    for _attempt in range(20):
        g = int(rng.choice(usable))
        task = str(rng.choice(config.tasks))
        half = bank.extent / 2
        r = float(np.linalg.norm(half[:2]))
        x = rng.uniform(ws.x_min + ws.edge_margin + r, ws.x_max - ws.edge_margin - r)
        y = rng.uniform(ws.y_min + ws.edge_margin + r, ws.y_max - ws.edge_margin - r)
        start = resting_start(bank.rest, x, y, rng.uniform(-np.pi, np.pi))
        try:
            spec, request = sample_task(task, start, bank.extent, rng, ws)
            motion = plan_object_motion(request, config.fps, rng)
        except (SequenceError, PlanningError, ValueError):
            continue
        hands = {h: hg for h, hg in bank.grasps[g].items()
                 if bank.checks[g].get(h, {}).get("success")}
        composed = compose(start, motion, hands, config.fps, Timing.random(rng))
        obj = ObjectModel.from_arrays(bank.points, bank.normals)
        motions = {h: hand_motion(h, composed.wrist_poses[h], composed.joints[h],
                                  composed.object_poses, obj, validation=bank.checks[g][h])
                   for h in hands}
        text_seed = int(rng.integers(2**31))
        object_id = bank.source.object_id
        kwargs = spec.instruction_kwargs()
        seen = generate_instructions(spec.task, object_id, n=config.instructions,
                                     phrasing="seen", seed=text_seed, **kwargs)
        held = generate_instructions(spec.task, object_id, n=config.heldout_instructions,
                                     phrasing="heldout", seed=text_seed, **kwargs)
        meta = {"seed": config.seed, "number": number, "grasp": g, "grasp_mode": bank.modes[g],
                "task_spec": asdict(spec), "phases": composed.phases,
                "generator": "unihm data synth"}
        return SequenceRecord(
            sequence_id=f"seq_{number:06d}", fps=config.fps, object_id=object_id,
            mesh_path=bank.source.mesh_path, object_points=bank.points,
            object_normals=bank.normals, object_poses=composed.object_poses, task=spec.task,
            instructions=tuple(seen), heldout_instructions=tuple(held), hands=motions,
            source="synthetic", metadata=meta)
    raise SequenceError(f"sequence {number}: no feasible task/placement in 20 attempts")


def _sequence_batch(bank: GraspBank, config: SynthConfig, numbers: Sequence[int],
                    out: str) -> list[tuple[int, IndexEntry | None, str | None]]:
    """Worker: build and write a batch of sequences; (number, entry, error) each."""
    results: list[tuple[int, IndexEntry | None, str | None]] = []
    for n in numbers:
        try:
            record = build_sequence(bank, config, n)
        except SequenceError as exc:
            results.append((n, None, str(exc)))
            continue
        rel = f"{SEQUENCE_DIR}/{record.sequence_id}{SEQUENCE_SUFFIX}"
        save_sequence(record, Path(out) / rel)
        results.append((n, IndexEntry.of(record, rel), None))
    return results


def _mean(values: Sequence[float]) -> float:
    return float(np.mean(values)) if values else 0.0


def grasp_summary(banks: Sequence[GraspBank], hands: Sequence[str]) -> dict[str, Any]:
    """Per hand and object: grasps checked, passed, penetrations (written to grasps.json)."""
    out: dict[str, Any] = {"objects": {}, "hands": {}}
    for bank in banks:
        rows = {}
        for hand_id in hands:
            checks = [c[hand_id] for c in bank.checks if hand_id in c]
            rows[hand_id] = {"checked": len(checks),
                             "kept": sum(bool(c["kept"]) for c in checks),
                             "passed": sum(bool(c["success"]) for c in checks),
                             "kept_flags": [bool(c["kept"]) for c in checks],
                             "penetration_mm": [float(c["penetration_mm"]) for c in checks],
                             "reasons": [c.get("reason", "") for c in checks],
                             "origins": [c.get("origin", "") for c in checks],
                             "support": [c.get("support", 0.0) for c in checks],
                             "capacity": [c.get("capacity", 0.0) for c in checks]}
        out["objects"][bank.source.object_id] = {"grasps": rows, "seconds": bank.seconds}
    for hand_id in hands:
        rows = [o["grasps"][hand_id] for o in out["objects"].values()]
        checked = sum(r["checked"] for r in rows)
        kept = sum(r["kept"] for r in rows)
        passed = sum(r["passed"] for r in rows)
        pen = [p for r in rows for p in r["penetration_mm"]]
        kept_pen = [p for r in rows for p, k in zip(r["penetration_mm"], r["kept_flags"],
                                                      strict=True)
                    if k]
        passed_pen = [p for r in rows for p, why in zip(r["penetration_mm"], r["reasons"],
                                                         strict=True) if not why]
        out["hands"][hand_id] = {"checked": checked, "kept": kept, "passed": passed,
                                 "lift_success_rate": passed / kept if kept else 0.0,
                                 "mean_penetration_mm": _mean(pen),
                                 "mean_penetration_kept_mm": _mean(kept_pen),
                                 "mean_penetration_passed_mm": _mean(passed_pen),
                                 "max_penetration_mm": float(np.max(pen)) if pen else 0.0}
    return out


def check_config(config: SynthConfig) -> None:
    """Fail before any work on a bad object, hand, count or split."""
    if config.num < 1:
        raise ValueError(f"--num must be at least 1, got {config.num}")
    if not config.objects:
        raise ValueError("no objects given")
    ids = [resolve_object(s).object_id for s in config.objects]
    if len(set(ids)) != len(ids):
        raise ValueError(f"objects given twice: {ids}")
    unknown_unseen = set(config.unseen_objects) - set(ids)
    if unknown_unseen:
        raise ValueError(f"unseen objects {sorted(unknown_unseen)} are not among {ids}")
    for hand_id in config.hand_list():
        hand_kinematics(hand_id)


def _write_sequences(pool: ProcessPoolExecutor, banks: list[GraspBank], config: SynthConfig,
                     writer: DatasetWriter, *, report: SynthReport,
                     progress: Callable[[str, int, int], None] | None) -> None:
    """Stage 2: batches of ten sequences, each batch grouped by object."""
    jobs = []
    for start in range(0, config.num, 10):
        by_object: dict[int, list[int]] = {}
        for n in range(start, min(start + 10, config.num)):
            by_object.setdefault(n % len(banks), []).append(n)
        jobs += [pool.submit(_sequence_batch, banks[o], config, ns, str(writer.root))
                 for o, ns in by_object.items()]
    done = 0
    for job in jobs:
        for _n, entry, _error in job.result():
            done += 1
            if entry is not None:
                writer.register(entry)
                report.sequences += 1
            else:
                report.skipped += 1
            if progress:
                progress("sequences", done, config.num)


def synthesize(config: SynthConfig, out: str | os.PathLike[str], *, overwrite: bool = False,
               progress: Callable[[str, int, int], None] | None = None) -> SynthReport:
    """Build the dataset into ``out``; ``progress(stage, done, total)`` follows both stages.

    Ctrl-C keeps every sequence already written: the index is rewritten before returning.
    """
    check_config(config)
    report = SynthReport()
    tic = time.perf_counter()
    writer = DatasetWriter(out, overwrite=overwrite)
    writer.set_splits(config.unseen_objects, config.test_fraction, config.seed)
    writer.index.provenance = {"command": "unihm data synth", "config": asdict(config)}
    ctx = get_context("spawn")
    workers = max(1, config.workers)
    banks: list[GraspBank] = []
    try:
        with ProcessPoolExecutor(workers, mp_context=ctx) as pool:
            futures = [pool.submit(build_grasp_bank, s, config, i)
                       for i, s in enumerate(config.objects)]
            for i, f in enumerate(futures):
                banks.append(f.result())
                if progress:
                    progress("grasps", i + 1, len(futures))
            report.grasp_seconds = time.perf_counter() - tic
            summary = grasp_summary(banks, config.hand_list())
            Path(out, GRASPS_FILE).write_text(json.dumps(summary, indent=1), encoding="utf-8")
            report.per_hand = summary["hands"]
            t1 = time.perf_counter()
            _write_sequences(pool, banks, config, writer, report=report, progress=progress)
            report.sequence_seconds = time.perf_counter() - t1
    except KeyboardInterrupt:
        report.interrupted = True
    finally:
        writer.close()
        report.seconds = time.perf_counter() - tic
    return report
