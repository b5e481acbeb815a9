"""Generator node: serves ``/unihm/generate`` with the tokenizer + Qwen3 generator.

Thin over :class:`unihm_generator.generator.pipeline.Generator`: one token sequence per
request, decoded for every requested hand, published on ``/unihm/generated_trajectory`` (one
message per hand) and returned. The model loads once at start-up (``checkpoint`` parameter;
empty = the shipped default).
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
    joint_state_positions,
    observation_from_msg,
    pose_from_msg,
    target_from_msg,
)
from unihm_core.ros.runtime import PIPELINE_QOS, spin_nodes
from unihm_msgs.msg import HandTrajectory
from unihm_msgs.srv import Generate

NODE_NAME = "unihm_generator"
DEFAULTS: dict[str, Any] = {
    "checkpoint": "",
    "threads": 1,
    "warm_up": True,  # one request at start-up: the first goal does not pay the one-off costs
}


def unset_pose(pose: np.ndarray) -> bool:
    """A default-constructed Pose (origin, identity) means "no initial wrist pose given"."""
    return bool(np.allclose(pose, np.eye(4), atol=1e-12))


class GeneratorNode(Node):
    def __init__(self, *, node_name: str = NODE_NAME,
                 parameter_overrides: list[Parameter] | None = None,
                 generator: Any = None) -> None:
        super().__init__(node_name, parameter_overrides=parameter_overrides or [])
        for name, value in DEFAULTS.items():
            self.declare_parameter(name, value)
        import torch

        torch.set_num_threads(max(1, int(self.get_parameter("threads").value)))
        if generator is None:
            from unihm_generator.generator.pipeline import Generator

            generator = Generator.load(self.get_parameter("checkpoint").value or None)
        self.generator = generator
        if self.get_parameter("warm_up").value:
            self.get_logger().info(f"warmed up in {generator.warm_up():.2f} s")
        self.pub = self.create_publisher(HandTrajectory, "/unihm/generated_trajectory",
                                         PIPELINE_QOS)
        self.create_service(Generate, "/unihm/generate", self._on_generate,
                            callback_group=MutuallyExclusiveCallbackGroup())
        self.get_logger().info(f"ready: {len(generator.hands)} hands")

    def _spec(self, request: Generate.Request) -> Any:
        from unihm_core.hands.kinematics import hand_kinematics
        from unihm_generator.generator.pipeline import GenerationSpec

        if not request.instruction.strip():
            raise ValueError("the instruction is empty")
        hands = self.generator.check_hands(list(request.hands))
        obj = observation_from_msg(request.object)
        target = target_from_msg(request.target)
        first = hands[0]
        joints = None
        if request.initial_hand_state.name:
            names = hand_kinematics(first).joint_names
            joints = joint_state_positions(request.initial_hand_state, names,
                                           f"initial state of {first}").astype(np.float32)
        wrist = pose_from_msg(request.initial_wrist_pose, "initial_wrist_pose")
        spec = GenerationSpec(request.instruction, obj.points, target.poses, hands,
                              init_hand=first, init_joints=joints,
                              init_wrist=None if unset_pose(wrist) else wrist)
        return spec, target, obj

    def _on_generate(self, request: Generate.Request, response: Generate.Response
                     ) -> Generate.Response:
        from unihm_core.hands.kinematics import hand_kinematics
        from unihm_generator.generator.config import GeneratorError

        rid = request.request_id
        try:
            spec, target, _ = self._spec(request)
            t = float(request.temperature)
            if not np.isfinite(t) or t < 0:
                raise ValueError(f"temperature must be >= 0, got {t}")
            (motion,) = self.generator.generate(
                [spec], greedy=t == 0.0, temperature=t or 1.0, top_k=int(request.top_k),
                top_p=float(request.top_p) if request.top_p > 0 else 1.0,
                seed=int(request.seed))
        except (GeneratorError, MessageError, ValueError, LookupError) as e:
            response.success, response.message = False, str(e)
            self.get_logger().warning(f"[{rid}] generation failed: {e}")
            return response
        chunk = int(self.generator.tokenizer.config.chunk)
        for hand in spec.hands:
            kin = hand_kinematics(hand)
            msg = hand_trajectory_msg(
                HandMotion(hand, target.times, motion.wrist_poses, motion.joints[hand],
                           list(kin.joint_names), target.frame_id, f"{hand}_wrist",
                           motion.tokens.tolist(), chunk),
                request_id=rid, source=HandTrajectory.SOURCE_GENERATED,
                stamp=request.target.header.stamp)
            response.trajectories.append(msg)
            self.pub.publish(msg)
        response.success = True
        response.message = (f"{len(motion.tokens)} tokens decoded for "
                            f"{', '.join(spec.hands)}")
        return response


def main(args: list[str] | None = None) -> int:
    return spin_nodes([GeneratorNode], args=args, config_errors=(ValueError,))


if __name__ == "__main__":
    raise SystemExit(main())
