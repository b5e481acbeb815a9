"""Pictures of a sequence: a PNG filmstrip or an animated GIF of hand, object and trajectory.

People check motion by looking at it. Each panel shows the object's surface points at that
frame, the hand's skeleton (wrist -> finger keypoints, from forward kinematics of the stored
joints) with fingertips in contact highlighted, and the whole object trajectory as a line.
Drawn with matplotlib (no GPU or display needed).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from unihm_core.dataset.format import DatasetFormatError, SequenceRecord
from unihm_core.hands.kinematics import hand_kinematics
from unihm_core.se3 import FloatArray, transform_points

FORMATS = (".png", ".gif")


def _skeleton(hand_id: str, wrist: FloatArray, q: FloatArray) -> list[FloatArray]:
    """Polylines wrist -> each finger's keypoints (world)."""
    kin = hand_kinematics(hand_id)
    points = kin.keypoints(wrist[None], q[None])[0]
    lines, i = [], 1  # keypoint 0 is the palm
    for keypoints in kin.config.fingers.values():
        chain = points[i:i + len(keypoints)]
        lines.append(np.vstack([wrist[:3, 3], chain]))
        i += len(keypoints)
    return lines


def _limits(record: SequenceRecord, hand_id: str) -> tuple[FloatArray, float]:
    wrist = record.hands[hand_id].wrist_poses[:, :3, 3]
    path = record.object_poses[:, :3, 3]
    pts = np.vstack([wrist, path])
    center = (pts.max(axis=0) + pts.min(axis=0)) / 2
    radius = max(float((pts.max(axis=0) - pts.min(axis=0)).max()) / 2 + 0.08, 0.15)
    return center, radius


def _draw(ax, record: SequenceRecord, hand_id: str, t: int,  # type: ignore[no-untyped-def]
          *, center: FloatArray, radius: float, stride: int) -> None:
    motion = record.hands[hand_id]
    obj = transform_points(record.object_poses[t], record.object_points[::stride])
    ax.scatter(*obj.T, s=1.5, c="tab:orange", alpha=0.5, depthshade=False)
    path = record.object_poses[:, :3, 3]
    ax.plot(*path.T, c="tab:green", lw=1.0)
    tips_contact = motion.contacts[t]
    for k, line in enumerate(_skeleton(hand_id, motion.wrist_poses[t], motion.joints[t])):
        ax.plot(*line.T, c="tab:blue", lw=1.5)
        touching = k < len(tips_contact) and tips_contact[k]
        ax.scatter(*line[-1], s=14, c="tab:red" if touching else "tab:blue", depthshade=False)
    for i in range(3):
        getattr(ax, f"set_{'xyz'[i]}lim")(center[i] - radius, center[i] + radius)
    ax.set_box_aspect((1, 1, 1))
    ax.set_xticks([]), ax.set_yticks([]), ax.set_zticks([])
    phase = next((name for name, (a, b) in record.metadata.get("phases", {}).items()
                  if a <= t < b), "")
    ax.set_title(f"t={t / record.fps:.2f}s {phase}", fontsize=8)


def render_sequence(record: SequenceRecord, out: str | os.PathLike[str], *,
                    hand: str | None = None, frames: int = 8, stride: int = 2) -> Path:
    """Write ``out`` (.png filmstrip of ``frames`` panels, or .gif of every 2nd frame)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out)
    if out.suffix.lower() not in FORMATS:
        raise DatasetFormatError(f"{out}: choose a {' or '.join(FORMATS)} file")
    hand_id = hand or record.hand_ids[0]
    if hand_id not in record.hands:
        raise DatasetFormatError(f"sequence {record.sequence_id!r} has no hand {hand_id!r}; "
                                 f"it has {', '.join(record.hand_ids)}")
    if frames < 1:
        raise DatasetFormatError(f"frames must be at least 1, got {frames}")
    center, radius = _limits(record, hand_id)
    out.parent.mkdir(parents=True, exist_ok=True)
    caption = (f"{record.sequence_id} | {record.object_id} | {hand_id} | "
               f"{record.instructions[0] if record.instructions else record.task}")
    if out.suffix.lower() == ".png":
        picks = np.linspace(0, record.num_frames - 1, frames).round().astype(int)
        cols = min(4, frames)
        rows = int(np.ceil(frames / cols))
        fig = plt.figure(figsize=(3.0 * cols, 3.0 * rows + 0.4))
        for i, t in enumerate(picks):
            ax = fig.add_subplot(rows, cols, i + 1, projection="3d")
            _draw(ax, record, hand_id, int(t), center=center, radius=radius, stride=stride)
        fig.suptitle(caption, fontsize=9)
        fig.tight_layout()
        fig.savefig(out, dpi=90)
        plt.close(fig)
        return out
    from matplotlib.animation import FuncAnimation, PillowWriter

    fig = plt.figure(figsize=(4.5, 4.8))
    ax = fig.add_subplot(projection="3d")
    fig.suptitle(caption, fontsize=7)

    def update(t: int) -> None:
        ax.cla()
        _draw(ax, record, hand_id, t, center=center, radius=radius, stride=stride)

    anim = FuncAnimation(fig, update, frames=range(0, record.num_frames, 2))
    anim.save(out, writer=PillowWriter(fps=max(1, round(record.fps / 2))))
    plt.close(fig)
    return out
