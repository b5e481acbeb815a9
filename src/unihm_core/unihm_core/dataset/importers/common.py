"""What every importer shares: options, the report, object lookup, and human joints -> records.

Captured datasets differ in layout but not in what we make of them: a human hand (21 joints,
MANO/MediaPipe order) moving an object. :func:`human_record` turns such a capture into a
:class:`~unihm_core.dataset.format.SequenceRecord` the same way for every source (and the same
way synthesis does, :mod:`unihm_core.dataset.reference`): retarget the joints to each hand with
the human wrist as the robot wrist, label fingertip contacts against the object's trajectory
(:func:`~unihm_core.dataset.motion.hand_motion`) and keep the human joints. :class:`ImportSession`
runs the loop over a source's items: it writes with a :class:`DatasetWriter`, reports progress
and either raises or records a bad item, so one corrupt capture is named instead of lost.
"""

from __future__ import annotations

import os
import re
import time
import zlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.spatial.transform import Rotation, Slerp

from unihm_core.assets import AssetNotFoundError, asset_path
from unihm_core.dataset.format import HUMAN_JOINTS, DatasetFormatError, SequenceRecord
from unihm_core.dataset.index import INDEX_FILE, DatasetWriter
from unihm_core.dataset.motion import hand_motion
from unihm_core.hands.registry import UnknownHandError, get_hand_config, hand_ids
from unihm_core.hands.retargeting import Retargeter, estimate_wrist_poses
from unihm_core.object_model import ObjectModel
from unihm_core.se3 import FloatArray
from unihm_core.tasks import TASK_LIFT, TASKS

ProgressFn = Callable[[int, int], None]
"""``progress(done, total)`` after each source item (called once with done=0 first)."""
GRIPPER = "panda_gripper"
SIDES = ("right", "left")
ON_ERROR = ("raise", "skip")
YCB_MESH = "textured_simple.obj"
DEFAULT_TASK = TASK_LIFT
"""Grasp-and-lift captures (DexYCB, most of OakInk) are ``lift`` unless the source says more."""

T = TypeVar("T")


class ImportSkip(Exception):  # noqa: N818 - a signal, not an error: nothing to import here
    """A source item that is well formed but yields no sequence (the reason is reported)."""


class UnknownFormatError(DatasetFormatError):
    """An import format name that no importer handles."""


# ------------------------------------------------------------------------------------ report
@dataclass
class ImportReport:
    """What an import did: sequences written, items skipped and why."""

    format: str
    src: str
    out: str
    written: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    """(source item, reason) for every item that produced no sequence."""
    hands: list[str] = field(default_factory=list)
    frames: int = 0
    seconds: float = 0.0

    @property
    def n_written(self) -> int:
        return len(self.written)

    @property
    def n_skipped(self) -> int:
        return len(self.skipped)

    def summary(self, max_items: int = 20) -> dict[str, Any]:
        """A JSON-ready digest (reasons counted; the first ``max_items`` skipped items listed)."""
        reasons: dict[str, int] = {}
        for _, reason in self.skipped:
            reasons[reason] = reasons.get(reason, 0) + 1
        return {"format": self.format, "src": self.src, "out": self.out,
                "written": self.n_written, "skipped": self.n_skipped,
                "skip_reasons": reasons,
                "skipped_items": [f"{item}: {why}" for item, why in self.skipped[:max_items]],
                "hands": list(self.hands), "frames": self.frames,
                "seconds": round(self.seconds, 2)}


@dataclass(frozen=True)
class ImportOptions:
    """Options every importer takes (see :func:`unihm_core.dataset.importers.run_import`)."""

    hands: tuple[str, ...] | None = None
    fps: float | None = None
    seed: int = 0
    on_error: str = "raise"
    instructions: int = 4
    heldout_instructions: int = 2
    surface_points: int = 1024
    overwrite: bool = False

    def __post_init__(self) -> None:
        if self.on_error not in ON_ERROR:
            raise DatasetFormatError(f"on_error must be one of {ON_ERROR}, got {self.on_error!r}")
        if self.fps is not None and not (np.isfinite(self.fps) and self.fps > 0):
            raise DatasetFormatError(f"fps must be positive, got {self.fps}")
        if self.instructions < 0 or self.heldout_instructions < 0 or self.surface_points < 1:
            raise DatasetFormatError("instruction counts must be >= 0 and surface points >= 1")


# ----------------------------------------------------------------------------------- objects
@dataclass(frozen=True)
class ObjectRef:
    """The object of a sequence: id, mesh on disk, how the record names the mesh."""

    object_id: str
    mesh_file: Path
    mesh_path: str
    """Asset-relative for shared assets (portable between machines), else absolute."""
    name: str | None = None
    """Words for instructions when the id is not in the object catalog (None: derive)."""


def ycb_object(name: str, search: Iterable[Path | None] = (), where: str = "") -> ObjectRef:
    """A YCB object by folder name (``006_mustard_bottle``): its ``textured_simple.obj`` in the
    first of ``search`` (dataset model folders) that has it, else in the shared assets."""
    tried: list[str] = []
    for folder in search:
        if folder is None:
            continue
        mesh = Path(folder) / name / YCB_MESH
        tried.append(str(mesh))
        if mesh.is_file():
            return ObjectRef(name, mesh.resolve(), str(mesh.resolve()))
    rel = f"ycb_objects/{name}/{YCB_MESH}"
    try:
        return ObjectRef(name, asset_path(rel), rel)
    except AssetNotFoundError as exc:
        tried += [str(p) for p in exc.searched]
    except ValueError:
        pass
    prefix = f"{where}: " if where else ""
    raise DatasetFormatError(f"{prefix}no mesh for object {name!r}; looked for "
                             f"{', '.join(tried) or rel}")


def mesh_object(object_id: str, mesh: Path, where: str) -> ObjectRef:
    """An object given by a mesh file that must exist."""
    if not mesh.is_file():
        raise DatasetFormatError(f"{where}: object mesh {mesh} does not exist")
    return ObjectRef(object_id, mesh.resolve(), str(mesh.resolve()))


# ------------------------------------------------------------------------------- small tools
def sequence_id(*parts: str) -> str:
    """A record id from source names: path separators and odd characters become '_'."""
    text = "-".join(p for p in parts if p)
    text = re.sub(r"[^A-Za-z0-9._-]+", "_", text.replace(os.sep, "__").replace("/", "__"))
    return text.lstrip(".") or "sequence"


def as_str(value: Any, what: str) -> str:
    """A string stored in an npz (0-d or 1-element unicode/object array) or given directly."""
    arr = np.asarray(value)
    if arr.size == 1 and arr.dtype.kind in "UO" and isinstance(arr.reshape(-1)[0], str):
        return str(arr.reshape(-1)[0])
    if arr.size == 1 and arr.dtype.kind == "S":
        return arr.reshape(-1)[0].decode("utf-8", "replace")
    raise DatasetFormatError(f"{what}: expected a string, got {arr.dtype} of shape {arr.shape}")


def as_float(value: Any, what: str) -> float:
    arr = np.asarray(value)
    if arr.size != 1 or arr.dtype.kind not in "iuf":
        raise DatasetFormatError(f"{what}: expected one number, got {arr.dtype} {arr.shape}")
    out = float(arr.reshape(-1)[0])
    if not np.isfinite(out):
        raise DatasetFormatError(f"{what}: not finite")
    return out


def float_array(value: Any, what: str, shape: tuple[int | None, ...]) -> FloatArray:
    """``value`` as float64 of the given shape (None: any length), or a DatasetFormatError."""
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise DatasetFormatError(f"{what}: not numeric ({exc})") from exc
    if arr.ndim != len(shape) or any(s is not None and s != d
                                     for s, d in zip(shape, arr.shape, strict=True)):
        want = ", ".join("T" if s is None else str(s) for s in shape)
        raise DatasetFormatError(f"{what}: expected shape ({want}), got {arr.shape}")
    return arr


def frame_ranges(mask: NDArray[np.bool_]) -> list[list[int]]:
    """[start, end) ranges of the True entries (compact metadata for long sequences)."""
    idx = np.flatnonzero(mask)
    if idx.size == 0:
        return []
    breaks = np.flatnonzero(np.diff(idx) > 1)
    starts = np.r_[idx[0], idx[breaks + 1]]
    ends = np.r_[idx[breaks], idx[-1]] + 1
    return [[int(a), int(b)] for a, b in zip(starts, ends, strict=True)]


def rigid_or_nan(poses: ArrayLike, tol: float = 1e-2) -> FloatArray:
    """(T, 4, 4) poses with rotations re-orthonormalized (float32 sources drift); frames that
    are not finite or not close to a rotation become NaN (unknown)."""
    arr = np.array(poses, dtype=np.float64)
    out = np.full_like(arr, np.nan)
    finite = np.all(np.isfinite(arr.reshape(len(arr), -1)), axis=1)
    for i in np.flatnonzero(finite):
        rot = arr[i, :3, :3]
        if np.abs(rot @ rot.T - np.eye(3)).max() > tol or np.linalg.det(rot) <= 0:
            continue
        u, _, vt = np.linalg.svd(rot)
        out[i] = np.eye(4)
        out[i, :3, :3] = u @ vt
        out[i, :3, 3] = arr[i, :3, 3]
    return out


def fill_poses(poses: FloatArray) -> FloatArray:
    """Unknown (NaN) frames take the nearest earlier known pose (the first known before it)."""
    known = np.all(np.isfinite(poses.reshape(len(poses), -1)), axis=1)
    if not known.any():
        raise ImportSkip("no frame with a valid object pose")
    idx = np.where(known, np.arange(len(poses)), -1)
    idx = np.maximum.accumulate(idx)
    idx[idx < 0] = np.flatnonzero(known)[0]
    return poses[idx]


def hold_fill(points: FloatArray, valid: NDArray[np.bool_]) -> FloatArray:
    """Invalid frames repeat the previous valid frame (the first valid one before it)."""
    idx = np.where(valid, np.arange(len(points)), -1)
    idx = np.maximum.accumulate(idx)
    idx[idx < 0] = np.flatnonzero(valid)[0]
    return points[idx]


def resample_positions(frames: int, src_fps: float, fps: float) -> FloatArray:
    """Fractional source frame indices of the samples at ``fps`` over the same time span."""
    duration = (frames - 1) / src_fps
    n = int(np.floor(duration * fps + 1e-9)) + 1
    return np.arange(n) * (src_fps / fps)


def resample_values(values: FloatArray, valid: NDArray[np.bool_], pos: FloatArray
                    ) -> tuple[FloatArray, NDArray[np.bool_]]:
    """Linear interpolation at ``pos``; a sample is valid when both neighbours are."""
    lo = np.clip(np.floor(pos).astype(int), 0, len(values) - 1)
    hi = np.clip(lo + 1, 0, len(values) - 1)
    w = (pos - lo).reshape(-1, *([1] * (values.ndim - 1)))
    exact = np.isclose(pos, lo)
    ok = valid[lo] & (valid[hi] | exact)
    with np.errstate(invalid="ignore"):
        out = np.where(exact.reshape(w.shape), values[lo], (1 - w) * values[lo] + w * values[hi])
    out[~ok] = np.nan
    return out, ok


def resample_poses(poses: FloatArray, pos: FloatArray) -> FloatArray:
    """Poses at fractional frame indices ``pos``: linear translation, slerp rotation."""
    if len(poses) == 1:
        return np.repeat(poses, len(pos), axis=0)
    times = np.arange(len(poses), dtype=np.float64)
    clipped = np.clip(pos, 0, len(poses) - 1)
    rot = Slerp(times, Rotation.from_matrix(poses[:, :3, :3]))(clipped).as_matrix()
    out = np.tile(np.eye(4), (len(pos), 1, 1))
    out[:, :3, :3] = rot
    for k in range(3):
        out[:, k, 3] = np.interp(clipped, times, poses[:, k, 3])
    return out


# ---------------------------------------------------------------------------- human captures
@dataclass
class HumanSequence:
    """A human hand moving an object, in one frame of reference (what importers read)."""

    sequence_id: str
    source_file: str
    joints: FloatArray
    """(T, 21, 3) MANO/MediaPipe order, metres; NaN rows are frames without a hand."""
    object_poses: FloatArray
    """(T, 4, 4) pose of the object mesh's frame; NaN where unknown (held from neighbours)."""
    obj: ObjectRef
    fps: float
    side: str = "right"
    task: str = DEFAULT_TASK
    instructions: tuple[str, ...] | None = None
    task_params: dict[str, Any] = field(default_factory=dict)
    """Words the instruction generator needs for some tasks (push direction, destination)."""
    metadata: dict[str, Any] = field(default_factory=dict)


class ImportSession:
    """One import run: options, retargeter and object caches, the writer and the report."""

    def __init__(self, fmt: str, src: str | os.PathLike[str], out: str | os.PathLike[str],
                 options: ImportOptions, progress: ProgressFn | None = None) -> None:
        self.fmt = fmt
        self.src = Path(src)
        self.out = Path(out)
        self.options = options
        self.progress = progress
        self.report = ImportReport(fmt, str(src), str(out))
        self._retargeters: dict[str, Retargeter] = {}
        self._objects: dict[Path, ObjectModel] = {}
        self._ids: set[str] = set()
        if options.hands is not None:
            self.check_hands(options.hands)

    # ------------------------------------------------------------------------------ hands
    @staticmethod
    def check_hands(hands: Sequence[str]) -> None:
        if not hands:
            raise DatasetFormatError("no hands requested")
        for hand in hands:
            try:
                get_hand_config(hand)
            except UnknownHandError as exc:
                raise DatasetFormatError(str(exc)) from exc

    def hands_for_side(self, side: str) -> tuple[str, ...]:
        """The requested hands, else every registry hand of ``side`` and the gripper."""
        if self.options.hands is not None:
            return tuple(self.options.hands)
        same = [h for h in hand_ids() if get_hand_config(h).side == side]
        return (*same, GRIPPER) if GRIPPER in hand_ids() else tuple(same)

    def retargeter(self, hand_id: str) -> Retargeter:
        """Built once per run: building one costs more than retargeting a capture."""
        if hand_id not in self._retargeters:
            self._retargeters[hand_id] = Retargeter(hand_id)
        return self._retargeters[hand_id]

    # ---------------------------------------------------------------------------- objects
    def object_model(self, ref: ObjectRef) -> ObjectModel:
        if ref.mesh_file not in self._objects:
            try:
                model = ObjectModel.from_file(ref.mesh_file, n_points=self.options.surface_points,
                                              seed=self.options.seed)
            except ValueError as exc:
                raise DatasetFormatError(f"object {ref.object_id!r}: {exc}") from exc
            self._objects[ref.mesh_file] = model
        return self._objects[ref.mesh_file]

    def instructions(self, task: str, ref: ObjectRef, seq_id: str, *,
                     given: Sequence[str] | None = None, params: Mapping[str, Any] | None = None,
                     where: str = "") -> tuple[tuple[str, ...], tuple[str, ...]]:
        """(seen, held-out) paraphrases; the source's own instructions, when it has them, are
        the seen set. ``params`` are the task's words (push direction, destination, ...).
        Seeded by the run seed and the sequence id, so re-imports agree."""
        from unihm_core.dataset.instructions import generate_instructions

        opts = self.options
        seed = (zlib.crc32(seq_id.encode()) ^ opts.seed) & 0x7FFFFFFF
        kwargs = dict(params or {})

        def phrase(n: int, phrasing: str) -> tuple[str, ...]:
            return tuple(generate_instructions(task, ref.object_id, n=n, phrasing=phrasing,
                                               seed=seed, object_name=ref.name, **kwargs))

        seen = tuple(s.strip() for s in given if s.strip()) if given else ()
        try:
            return seen or phrase(opts.instructions, "seen"), \
                phrase(opts.heldout_instructions, "heldout")
        except ValueError as exc:  # the generator's parameter errors are ValueErrors
            if seen:
                return seen, ()  # the source's own words stand; no held-out set to add
            raise DatasetFormatError(f"{where or seq_id}: cannot phrase the {task} task: {exc} "
                                     "(give task_params or instructions)") from exc

    def unique_id(self, seq_id: str) -> str:
        out, k = seq_id, 2
        while out in self._ids:
            out, k = f"{seq_id}_{k}", k + 1
        self._ids.add(out)
        return out

    # ------------------------------------------------------------------------------- loop
    def _writer(self, provenance: Mapping[str, Any] | None) -> DatasetWriter:
        writer = DatasetWriter(self.out, overwrite=self.options.overwrite)
        writer.index.provenance = {
            "importer": self.fmt, "src": str(self.src.resolve()),
            "options": {k: (list(v) if isinstance(v, tuple) else v)
                        for k, v in vars(self.options).items()},
            **dict(provenance or {})}
        return writer

    def run(self, items: Sequence[T], name: Callable[[T], str],
            build: Callable[[T], SequenceRecord | Iterable[SequenceRecord]],
            provenance: Mapping[str, Any] | None = None) -> ImportReport:
        """Build and write every item; bad items raise, or are reported with on_error="skip".

        The dataset folder is created with the first sequence (or at the end, empty, when
        every item was skipped), so an import that fails on its first item leaves nothing
        behind that a corrected re-run would collide with.
        """
        if (self.out / INDEX_FILE).exists() and not self.options.overwrite:
            raise DatasetFormatError(f"{self.out} already holds a dataset; choose another "
                                     "folder or pass overwrite")
        tic = time.perf_counter()
        report = self.report
        total = len(items)
        if self.progress:
            self.progress(0, total)
        writer: DatasetWriter | None = None
        try:
            for done, item in enumerate(items, start=1):
                try:
                    built = build(item)
                    records = [built] if isinstance(built, SequenceRecord) else list(built)
                    for record in records:
                        writer = writer or self._writer(provenance)
                        writer.add(record)
                        report.written.append(record.sequence_id)
                        report.frames += record.num_frames
                        report.hands += [h for h in record.hand_ids if h not in report.hands]
                except ImportSkip as exc:
                    report.skipped.append((name(item), str(exc)))
                except DatasetFormatError as exc:
                    if self.options.on_error == "raise":
                        raise
                    report.skipped.append((name(item), str(exc)))
                if self.progress:
                    self.progress(done, total)
            writer = writer or self._writer(provenance)
        finally:
            if writer is not None:
                writer.close()
        report.seconds = time.perf_counter() - tic
        return report


def check_task(task: str, where: str) -> str:
    if task not in TASKS:
        raise DatasetFormatError(f"{where}: unknown task {task!r} (one of {', '.join(TASKS)})")
    return task


PALM_LENGTH_M = (0.03, 0.3)
"""Plausible wrist -> middle-MCP distances (an adult's is about 0.09 m)."""


def _check_metres(joints: FloatArray, where: str) -> None:
    """Joints in millimetres or centimetres would retarget to nonsense without an error."""
    if len(joints) == 0:
        return
    palm = float(np.median(np.linalg.norm(joints[:, 9] - joints[:, 0], axis=-1)))
    if not PALM_LENGTH_M[0] <= palm <= PALM_LENGTH_M[1]:
        raise DatasetFormatError(f"{where}: the wrist to middle-knuckle distance is {palm:.4g}; "
                                 "expected about 0.09 (joints must be in metres, in the "
                                 "MANO/MediaPipe order)")


def human_record(session: ImportSession, seq: HumanSequence) -> SequenceRecord:
    """Retarget a human capture to every requested hand and label contacts (module doc).

    Frames before the first and after the last frame with a hand are cut (a robot hand has no
    pose there); frames without a hand in between hold the previous hand pose, and the human
    joints stored with the record repeat the previous valid frame there (listed in the metadata
    as ``invalid_frames``). ``options.fps`` resamples the capture first.
    """
    where = seq.source_file
    joints = float_array(seq.joints, f"{where}: hand joints", (None, HUMAN_JOINTS, 3))
    poses = rigid_or_nan(float_array(seq.object_poses, f"{where}: object poses", (None, 4, 4)))
    if len(poses) != len(joints):
        raise DatasetFormatError(f"{where}: {len(joints)} frames of hand joints but "
                                 f"{len(poses)} object poses")
    if seq.side not in SIDES:
        raise DatasetFormatError(f"{where}: hand side must be one of {SIDES}, got {seq.side!r}")
    check_task(seq.task, where)
    valid = np.all(np.isfinite(joints.reshape(len(joints), -1)), axis=1)
    _check_metres(joints[valid], where)
    fps = float(seq.fps)
    target = session.options.fps
    if target is not None and abs(target - fps) > 1e-9 and len(joints) > 1:
        pos = resample_positions(len(joints), fps, target)
        joints, valid = resample_values(joints, valid, pos)
        poses = resample_poses(fill_poses(poses), pos)
        fps = float(target)
    with np.errstate(invalid="ignore"):
        wrist = estimate_wrist_poses(np.where(valid[:, None, None], joints, np.nan), seq.side)
    valid &= np.all(np.isfinite(wrist.reshape(len(wrist), -1)), axis=1)
    idx = np.flatnonzero(valid)
    if idx.size < 2:
        raise ImportSkip("fewer than 2 frames with a hand")
    a, b = int(idx[0]), int(idx[-1]) + 1
    joints, wrist, valid = joints[a:b], wrist[a:b], valid[a:b]
    poses = fill_poses(poses[a:b])

    obj = session.object_model(seq.obj)
    motions = {}
    held: dict[str, int] = {}
    for hand in session.hands_for_side(seq.side):
        result = session.retargeter(hand).retarget(joints, wrist, valid=valid, frame="world",
                                                   human_side=seq.side)
        motions[hand] = hand_motion(hand, result.wrist_poses, result.q, poses, obj)
        held[hand] = int(result.held.sum())
    record_id = session.unique_id(seq.sequence_id)
    seen, heldout = session.instructions(seq.task, seq.obj, record_id, given=seq.instructions,
                                         params=seq.task_params, where=where)
    metadata = {
        "importer": session.fmt, "source_file": seq.source_file, "side": seq.side,
        "source_fps": float(seq.fps), "frames_kept": [a, b],
        "invalid_frames": frame_ranges(~valid), "retarget_held_frames": held,
        **({"task_params": seq.task_params} if seq.task_params else {}), **seq.metadata,
    }
    return SequenceRecord(
        sequence_id=record_id, fps=fps, object_id=seq.obj.object_id, mesh_path=seq.obj.mesh_path,
        object_points=obj.points, object_normals=obj.normals, object_poses=poses,
        task=seq.task, instructions=seen, heldout_instructions=heldout, hands=motions,
        human_joints=hold_fill(joints, valid), source=session.fmt, metadata=metadata)


def find_files(src: Path, pattern: str, what: str) -> list[Path]:
    """``src`` itself when it is a file, else the sorted matches of ``pattern`` under it."""
    if src.is_file():
        return [src]
    if not src.is_dir():
        raise DatasetFormatError(f"{src}: no such file or folder")
    files = sorted(p for p in src.rglob(pattern) if p.is_file())
    if not files:
        raise DatasetFormatError(f"{src}: no {what} found (looked for {pattern})")
    return files
