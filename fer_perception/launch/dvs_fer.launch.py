"""Event camera (+ its APS frames, optional RGB camera) -> fer_perception node.

    ros2 launch fer_perception dvs_fer.launch.py                       # live, topics from the parameter file
    ros2 launch fer_perception dvs_fer.launch.py start_driver:=true    # also start the dv-ros2 capture node
    ros2 launch fer_perception dvs_fer.launch.py bag:=recording rviz:=true
    ros2 launch fer_perception dvs_fer.launch.py rgb_topic:=/camera/color/image_raw device:=cuda
    ros2 launch fer_perception dvs_fer.launch.py --show-args           # every argument with its default

Every node parameter is a launch argument (generated from fer_perception/ros/params.py).
"""

from fer_perception.ros import launch_common

#: (name, default, description) of every launch argument of this file.
ARGUMENTS = launch_common.arguments(extra=launch_common.DRIVER_ARGS)


def generate_launch_description():
    return launch_common.launch_description(ARGUMENTS, driver=True)
