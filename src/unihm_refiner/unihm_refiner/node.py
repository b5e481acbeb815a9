"""Refiner node: serves ``/unihm/refine`` (physics-guided refinement of generated motions).

Thin over :class:`unihm_refiner.solver.Refiner`: the object surface comes from the request's
observation (its cloud with normals, object frame), the object's motion from the target
trajectory. Refined trajectories are published on ``/unihm/refined_trajectory`` and returned
with before/after metrics per hand. One refiner per hand type is kept (its set-up is reused).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.node import Node
from rclpy.parameter import Parameter

from unihm_core.ros.conversions import (
    HandMotion,
    MessageError,
    hand_trajectory_msg,
    metric_msgs,
    motion_from_hand_trajectory,
    observation_from_msg,
    target_from_msg,
)
from unihm_core.ros.runtime import PIPELINE_QOS, spin_nodes
from unihm_msgs.msg import HandTrajectory
from unihm_msgs.srv import Refine

NODE_NAME = "unihm_refiner"
DEFAULTS: dict[str, Any] = {
    "config": "",  # refiner YAML; empty = the shipped default
    "metrics": True,  # compute before/after figures (adds a few ms per hand)
    "warm_up": True,  # compile the solver at start-up, not in the first request
}
REPORTED = ("penetration_mean_mm", "penetration_max_mm", "contact_ratio", "jitter_mean",
            "limit_violations")


class RefinerNode(Node):
    def __init__(self, *, node_name: str = NODE_NAME,
                 parameter_overrides: list[Parameter] | None = None) -> None:
        super().__init__(node_name, parameter_overrides=parameter_overrides or [])
        for name, value in DEFAULTS.items():
            self.declare_parameter(name, value)
        from unihm_refiner.config import load_refiner_config

        self.config = load_refiner_config(self.get_parameter("config").value or None)
        self.with_metrics = bool(self.get_parameter("metrics").value)
        self._refiners: dict[str, Any] = {}
        if self.get_parameter("warm_up").value:
            self._warm_up()
        self.pub = self.create_publisher(HandTrajectory, "/unihm/refined_trajectory",
                                         PIPELINE_QOS)
        self.create_service(Refine, "/unihm/refine", self._on_refine,
                            callback_group=MutuallyExclusiveCallbackGroup())
        self.get_logger().info("ready")

    def _warm_up(self) -> None:
        """Refine a 3-frame synthetic grasp once: the first call compiles the numba loop
        (about 30 s on a fresh install, then cached on disk), which must not count against a
        request's timeout."""
        from unihm_refiner.scenario import grasp_scenario

        s = grasp_scenario(frames=3)
        self._refiner(s.hand_id).refine(s.wrist_poses, s.q, s.surface, s.target_poses)

    def _refiner(self, hand_id: str) -> Any:
        from unihm_refiner.solver import Refiner

        if hand_id not in self._refiners:
            self._refiners[hand_id] = Refiner(hand_id, self.config)
        return self._refiners[hand_id]

    def _on_refine(self, request: Refine.Request, response: Refine.Response
                   ) -> Refine.Response:
        from unihm_core.hands.config import HandConfigError
        from unihm_core.hands.registry import UnknownHandError
        from unihm_core.object_model import ObjectModel

        rid = request.request_id
        try:
            if not request.trajectories:
                raise ValueError("no trajectory to refine")
            obj = observation_from_msg(request.object)
            if obj.normals is None:
                raise MessageError("object cloud has no normals (normal_x/y/z fields)")
            surface = ObjectModel.from_arrays(obj.points, obj.normals)
            target = target_from_msg(request.target)
            motions = [motion_from_hand_trajectory(m) for m in request.trajectories]
            for motion in motions:
                if len(motion.times) != len(target.times):
                    raise MessageError(f"{motion.hand_id}: {len(motion.times)} points but the "
                                       f"target trajectory has {len(target.times)}")
            outputs = []
            for motion in motions:
                refiner = self._refiner(motion.hand_id)
                names = list(refiner.kin.joint_names)
                if motion.joint_names != names:
                    raise MessageError(f"{motion.hand_id}: joint names {motion.joint_names} "
                                       f"differ from the hand's {names}")
                result = refiner.refine(motion.wrist_poses, motion.joints, surface,
                                        target.poses)
                outputs.append((motion, result))
        except (MessageError, ValueError, UnknownHandError, HandConfigError) as e:
            response.success, response.message = False, str(e)
            self.get_logger().warning(f"[{rid}] refinement failed: {e}")
            return response
        fps = (len(target.times) - 1) / float(target.times[-1] - target.times[0])
        for motion, result in outputs:
            refined = HandMotion(motion.hand_id, motion.times, result.wrist_poses, result.q,
                                 motion.joint_names, motion.frame_id, motion.wrist_frame,
                                 motion.tokens, motion.frames_per_token)
            msg = hand_trajectory_msg(refined, request_id=rid,
                                      source=HandTrajectory.SOURCE_REFINED,
                                      stamp=request.target.header.stamp)
            response.trajectories.append(msg)
            self.pub.publish(msg)
            response.metrics.extend(metric_msgs(
                {"refine_time_s": result.seconds}, motion.hand_id))
            if self.with_metrics:
                response.metrics.extend(self._metrics(motion, result, surface, target.poses,
                                                      fps))
        response.success = True
        response.message = "refined " + ", ".join(
            f"{m.hand_id} ({r.frames_per_second:.0f} frames/s)" for m, r in outputs)
        return response

    @staticmethod
    def _metrics(motion: HandMotion, result: Any, surface: Any, poses: np.ndarray,
                 fps: float) -> list[Any]:
        from unihm_refiner.metrics import trajectory_metrics

        values = {}
        for tag, wrist, q in (("before", motion.wrist_poses, motion.joints),
                              ("after", result.wrist_poses, result.q)):
            figures = trajectory_metrics(motion.hand_id, wrist, q, surface, poses, fps=fps)
            for key in REPORTED:
                # name the stage before the unit suffix so the unit is still found
                stem, _, unit = key.rpartition("_") if key.endswith("_mm") else (key, "", "")
                values[f"{stem}_{tag}_{unit}" if unit else f"{key}_{tag}"] = figures[key]
        return metric_msgs(values, motion.hand_id)


def main(args: list[str] | None = None) -> int:
    return spin_nodes([RefinerNode], args=args, config_errors=(ValueError,))


if __name__ == "__main__":
    raise SystemExit(main())
