"""What a dataset holds: counts per task, object, split and hand, and its physics figures.

Physics figures come from the per-hand validation stored with every hand motion (the grasp's
MuJoCo check), so they describe what is in the dataset; a synthesized dataset also reports how
many checked grasps passed per hand (``grasps.json``), which is the lift success rate.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from unihm_core.dataset.index import SPLITS, Dataset
from unihm_core.dataset.synth import GRASPS_FILE


def dataset_stats(root: str | Path, *, read_sequences: bool = True) -> dict[str, Any]:
    """Summary of the dataset at ``root`` (``read_sequences=False``: index only, fast)."""
    ds = Dataset(root)
    entries = ds.entries
    out: dict[str, Any] = {
        "root": str(ds.root), "sequences": len(entries),
        "frames": int(sum(e.num_frames for e in entries)),
        "tasks": dict(Counter(e.task for e in entries)),
        "objects": dict(Counter(e.object_id for e in entries)),
        "sources": dict(Counter(e.source for e in entries)),
        "splits": {s: len(ds.ids(s)) for s in SPLITS},
        "unseen_objects": ds.index.unseen_objects,
        "hands": {},
    }
    per_hand: dict[str, dict[str, list[float]]] = {
        h: {"penetration_mm": [], "lift": []} for h in ds.hands}
    counts = Counter(h for e in entries for h in e.hands)
    if read_sequences:
        for record in ds.records():
            for hand_id, motion in record.hands.items():
                v = motion.validation
                if "penetration_mm" in v:
                    per_hand[hand_id]["penetration_mm"].append(float(v["penetration_mm"]))
                if "success" in v:
                    per_hand[hand_id]["lift"].append(float(bool(v["success"])))
    grasps = _grasp_checks(Path(root))
    for hand_id in ds.hands:
        pen, lift = per_hand[hand_id]["penetration_mm"], per_hand[hand_id]["lift"]
        row: dict[str, Any] = {"sequences": counts[hand_id]}
        if pen:
            row.update(mean_penetration_mm=float(np.mean(pen)),
                       max_penetration_mm=float(np.max(pen)))
        if lift:
            row["lift_success_in_sequences"] = float(np.mean(lift))
        if hand_id in grasps:
            g = grasps[hand_id]
            row.update(grasps_checked=g["checked"], grasps_kept=g.get("kept", g["checked"]),
                       grasps_passed=g["passed"],
                       lift_success_rate=g["lift_success_rate"],
                       checked_mean_penetration_mm=g["mean_penetration_mm"],
                       checked_max_penetration_mm=g["max_penetration_mm"])
        out["hands"][hand_id] = row
    return out


def _grasp_checks(root: Path) -> dict[str, Any]:
    path = root / GRASPS_FILE
    if not path.is_file():
        return {}
    return dict(json.loads(path.read_text(encoding="utf-8")).get("hands", {}))
