"""ROS 2 integration: the only part of fer_perception that imports rclpy or ROS message packages.

ROS-free (importable and tested without ROS): :mod:`.params` (parameter table, YAML, launch arguments),
:mod:`.convert` (results -> message fields), :mod:`.rep155` (ROS4HRI mapping), :mod:`.qos`, :mod:`.topics`,
:mod:`.launch_common`. rclpy at run time: :mod:`.node` (``fer_perception_node``) and the REP-155 publishers.
"""
