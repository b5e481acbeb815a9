"""ROS 2 glue shared by every node: message conversions, QoS profiles, node entry helpers.

Only nodes import this sub-package; the library modules of ``unihm_core`` and of the other
packages never do, so they stay usable without rclpy (``testing.assert_imports_without_ros``).
"""
