"""Perception node: keeps the newest synchronized RGB-D frame, serves ``/unihm/perceive``.

Thin over :class:`unihm_perception.pipeline.Perception`. Camera topics use sensor QoS; the
outputs (object cloud, object observation, target trajectory) are published reliable and
latched under the request id. Without tf2 (not on PyPI) the camera's pose in the planning
frame is a parameter, ``camera_pose`` = [x, y, z, qx, qy, qz, qw].
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup, ReentrantCallbackGroup
from rclpy.node import Node
from rclpy.parameter import Parameter
from sensor_msgs.msg import CameraInfo, Image, PointCloud2

from unihm_core.ros.conversions import (
    ObservedObject,
    Target,
    cloud_msg,
    observation_msg,
    target_msg,
)
from unihm_core.ros.runtime import PIPELINE_QOS, SENSOR_QOS, spin_nodes
from unihm_core.se3 import invert, pose_from_param, transform_points
from unihm_msgs.msg import ObjectObservation, TargetTrajectory
from unihm_msgs.srv import Perceive
from unihm_perception.frame_sync import ApproximateSync, SyncedFrame

NODE_NAME = "unihm_perception"
DEFAULTS: dict[str, Any] = {
    "planning_frame": "world",
    "color_topic": "/camera/color/image_raw",
    "depth_topic": "/camera/depth/image_raw",
    "camera_info_topic": "/camera/color/camera_info",
    "camera_pose": [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0],
    "sync_slop_s": 0.05,
    "max_frame_age_s": 2.0,
    "frame_wait_s": 3.0,  # how long a request waits for a fresh frame (camera starting)
    "objects": [""],
    "warm_up": True,
    "service": "/unihm/perceive",
}


class PerceptionNode(Node):
    def __init__(self, *, node_name: str = NODE_NAME,
                 parameter_overrides: list[Parameter] | None = None,
                 perception: Any = None) -> None:
        super().__init__(node_name, parameter_overrides=parameter_overrides or [])
        for name, value in DEFAULTS.items():
            self.declare_parameter(name, value)
        p = self.get_parameter
        self.planning_frame = p("planning_frame").value
        self.camera_pose = pose_from_param(p("camera_pose").value, "camera_pose")
        self.max_age = float(p("max_frame_age_s").value)
        self.frame_wait = float(p("frame_wait_s").value)
        self.sync = ApproximateSync(float(p("sync_slop_s").value))
        self.topics = {"color": p("color_topic").value, "depth": p("depth_topic").value,
                       "camera_info": p("camera_info_topic").value}
        if perception is None:
            from unihm_perception.pipeline import Perception
            from unihm_perception.registration import ObjectLibrary

            ids = [i for i in p("objects").value if i]
            if ids:  # any shared object asset by its id
                library = ObjectLibrary()
                for object_id in ids:
                    library.add_asset(object_id)
            else:
                library = ObjectLibrary.default()
            perception = Perception(library)
            if p("warm_up").value:
                perception.warm_up()
        self.perception = perception
        sensors = ReentrantCallbackGroup()
        for stream, msg_type in (("color", Image), ("depth", Image),
                                 ("camera_info", CameraInfo)):
            self.create_subscription(
                msg_type, self.topics[stream],
                lambda msg, s=stream: self.sync.add(
                    s, msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec, msg),
                SENSOR_QOS, callback_group=sensors)
        self.cloud_pub = self.create_publisher(PointCloud2, "/unihm/object_cloud", PIPELINE_QOS)
        self.object_pub = self.create_publisher(ObjectObservation, "/unihm/object",
                                                PIPELINE_QOS)
        self.target_pub = self.create_publisher(TargetTrajectory, "/unihm/target_trajectory",
                                                PIPELINE_QOS)
        self.create_service(Perceive, p("service").value, self._on_perceive,
                            callback_group=MutuallyExclusiveCallbackGroup())
        self.get_logger().info(f"ready: camera {self.topics}, planning frame "
                               f"{self.planning_frame!r}")

    # ------------------------------------------------------------------------ service
    def _frame(self) -> SyncedFrame:
        def usable(f: SyncedFrame | None) -> bool:
            return f is not None and time.monotonic() - f.received <= self.max_age

        frame = self.sync.latest()
        deadline = time.monotonic() + self.frame_wait
        while not usable(frame) and time.monotonic() < deadline:  # a camera (re)starting
            time.sleep(0.05)
            frame = self.sync.latest()
        if frame is None:
            missing = self.sync.missing()
            if missing:
                names = ", ".join(self.topics[s] for s in missing)
                raise LookupError(f"no camera data: nothing received on {names}")
            raise LookupError("no synchronized camera frame: color, depth and camera_info "
                              f"stamps differ by more than {self.sync.slop_ns / 1e6:.0f} ms")
        age = time.monotonic() - frame.received
        if age > self.max_age:
            raise LookupError(f"stale camera data: the newest frame arrived {age:.1f} s ago "
                              f"(max_frame_age_s {self.max_age:g})")
        return frame

    def _on_perceive(self, request: Perceive.Request, response: Perceive.Response
                     ) -> Perceive.Response:
        from unihm_perception.image_conversions import (
            camera_info_to_intrinsics,
            depth_image_to_metres,
            image_to_numpy,
            to_rgb,
        )

        rid = request.request_id
        frame_id = request.planning_frame or self.planning_frame
        try:
            frame = self._frame()
            intrinsics = camera_info_to_intrinsics(frame.camera_info)
            color = to_rgb(image_to_numpy(frame.color), frame.color.encoding)
            depth = depth_image_to_metres(frame.depth)
            if depth.shape != (intrinsics.height, intrinsics.width):
                raise ValueError(f"depth is {depth.shape[1]}x{depth.shape[0]} but camera_info "
                                 f"says {intrinsics.width}x{intrinsics.height}")
            result = self.perception.perceive(color, depth, intrinsics, self.camera_pose,
                                              request.instruction)
        except Exception as e:  # noqa: BLE001 - every failure becomes the response's message
            response.success = False
            response.message = f"{type(e).__name__}: {e}" if not isinstance(
                e, (LookupError, ValueError, RuntimeError)) else str(e)
            response.candidates = list(getattr(e, "candidates", []) or [])
            self.get_logger().warning(f"[{rid}] perception failed: {response.message}")
            return response
        stamp = frame.color.header.stamp
        pose = np.asarray(result.pose, dtype=np.float64)
        local = transform_points(invert(pose), result.cloud_points)
        normals = np.asarray(result.cloud_normals) @ pose[:3, :3]
        obj = ObservedObject(result.object_id or "", result.label or "", pose,
                             result.fitness, local, normals, frame_id)
        target = Target(np.asarray(result.trajectory.times), np.asarray(result.target_poses),
                        result.trajectory.task, result.object_id or "", result.label or "",
                        frame_id)
        response.success = True
        response.object = observation_msg(obj, request_id=rid, stamp=stamp)
        response.target = target_msg(target, request_id=rid, stamp=stamp)
        response.candidates = [o.candidate.label or o.candidate.id or "unknown"
                               for o in result.objects]
        timings = ", ".join(f"{k} {v:.0f}" for k, v in result.timings_ms.items())
        response.message = (f"{result.label or result.object_id} (fitness "
                            f"{result.fitness:.2f}), task {target.task}; ms: {timings}")
        self.cloud_pub.publish(cloud_msg(result.cloud_points, result.cloud_normals,
                                         frame_id=frame_id, stamp=stamp))
        self.object_pub.publish(response.object)
        self.target_pub.publish(response.target)
        return response


def main(args: list[str] | None = None) -> int:
    return spin_nodes([PerceptionNode], args=args, config_errors=(ValueError,))


if __name__ == "__main__":
    raise SystemExit(main())
