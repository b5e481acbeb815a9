"""Recording the pipeline into rosbag2 files and replaying camera bags into a running graph.

``types``, ``goal_record`` and ``outcomes`` are ROS-free (rosbags and numpy only); ``recorder``,
``player`` and ``replay`` hold the rclpy nodes. See docs/bags.md.
"""
