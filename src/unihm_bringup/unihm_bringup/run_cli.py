"""``unihm run sim|real|replay``: start the whole node graph in one process.

The same graph as the launch files (:mod:`unihm_bringup.graph`), for machines without
``launch``/``launch_ros``. ``sim`` without ``--bag`` renders a tabletop scene (the shared
mustard bottle, mug, sugar box and tomato soup can) into a camera bag first and streams it; the
camera's pose for perception comes from the bag's ground truth. ``replay`` starts no camera
(``unihm replay BAG`` streams the bag's frames); its ``--bag`` only supplies the camera pose.
Prints ``ready`` once every node exists; Ctrl-C (or SIGTERM) stops every node cleanly.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

SIM_OBJECTS = ("006_mustard_bottle", "025_mug", "004_sugar_box", "005_tomato_soup_can")
SIM_SEED = 3


def render_sim_bag(out: Path, objects: tuple[str, ...] = SIM_OBJECTS, seed: int = SIM_SEED
                   ) -> Path:
    """Render one tabletop frame into a camera bag at ``out`` (a folder that must not exist)."""
    import os

    os.environ.setdefault("MUJOCO_GL", "egl")
    from unihm_perception.bag_io import write_frames_bag
    from unihm_perception.scene import random_scene, render

    frame = render(random_scene(list(objects), seed=seed))
    return write_frames_bag(out, [frame])


def camera_pose_from_bag(bag: Path) -> list[float] | None:
    """[x, y, z, qx, qy, qz, qw] of the camera from the bag's ground truth, if it has one."""
    import numpy as np

    from unihm_core.se3 import xyz_quat_from_pose
    from unihm_perception.bag_io import read_ground_truth
    from unihm_perception.cli import CAMERA_POSE_KEY

    try:
        records = read_ground_truth(bag)
    except (OSError, ValueError):
        return None
    for record in records:
        pose = record.get(CAMERA_POSE_KEY)
        if pose is not None:
            xyz, quat = xyz_quat_from_pose(np.asarray(pose, dtype=np.float64))
            return [float(v) for v in (*xyz, *quat)]
    return None


def _parse_set(values: list[str]) -> dict[str, dict[str, Any]]:
    """``node.param=value`` (value as YAML) -> {node: {param: value}}."""
    import yaml

    out: dict[str, dict[str, Any]] = {}
    for item in values:
        key, sep, raw = item.partition("=")
        node, dot, param = key.partition(".")
        if not sep or not dot or not node or not param:
            raise ValueError(f"--set expects node.param=value, got {item!r}")
        out.setdefault(node, {})[param] = yaml.safe_load(raw)
    return out


def build_graph(mode: str, *, params_file: str | None = None, bag: str | None = None,
                sets: list[str] | None = None, workdir: Path | None = None) -> list[Any]:
    """The graph's NodeSpecs with the camera source and camera pose resolved."""
    from unihm_bringup.graph import node_graph

    overrides = _parse_set(sets or [])
    if mode == "sim" and bag is None:
        workdir = workdir or Path(tempfile.mkdtemp(prefix="unihm-sim-"))
        bag = str(render_sim_bag(workdir / "scene"))
    if bag is not None:
        if not Path(bag).exists():
            raise ValueError(f"bag {bag} does not exist")
        if mode == "sim":
            overrides.setdefault("unihm_camera", {}).setdefault("bag", str(bag))
        pose = camera_pose_from_bag(Path(bag))
        if pose is not None:
            overrides.setdefault("unihm_perception", {}).setdefault("camera_pose", pose)
    return node_graph(mode, params_file, overrides)


def run_graph(specs: list[Any], args: list[str] | None = None) -> int:
    from unihm_bringup.graph import build_node
    from unihm_core.ros.runtime import spin_nodes

    def make(spec: Any) -> Any:
        return lambda: build_node(spec)

    def ready(nodes: list[Any]) -> None:
        print("ready " + json.dumps([n.get_name() for n in nodes]), flush=True)

    return spin_nodes([make(s) for s in specs], args=args, ready=ready)


def run(args: argparse.Namespace) -> int:
    from unihm_bringup.graph import GraphConfigError

    try:
        specs = build_graph(args.mode, params_file=args.params, bag=args.bag, sets=args.set)
    except (GraphConfigError, ValueError, OSError) as e:
        print(f"unihm run: error: {e}", file=sys.stderr)
        return 1
    if args.print_graph:
        print(json.dumps([{"name": s.name, "package": s.package, "executable": s.executable,
                           "parameters": s.parameters} for s in specs], indent=1))
        return 0
    return run_graph(specs)


def register_run(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("run", help="start the UniHM node graph (sim, real or replay)",
                              description=__doc__)
    p.add_argument("mode", choices=("sim", "real", "replay"))
    p.add_argument("--params", help="ROS 2 parameter YAML (default: config/<mode>.yaml)")
    p.add_argument("--bag", help="sim: camera bag to stream (default: a rendered scene); "
                                 "replay: the bag whose camera pose perception uses")
    p.add_argument("--set", action="append", default=[], metavar="NODE.PARAM=VALUE",
                   help="override one parameter (repeatable), e.g. "
                        "unihm_executive.default_hands=[allegro_right]")
    p.add_argument("--print-graph", action="store_true",
                   help="print the nodes and their parameters, start nothing")
    p.set_defaults(func=run)
