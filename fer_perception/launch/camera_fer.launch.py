"""RGB camera only (no event camera) -> fer_perception node: frame expression, age and gender.

    ros2 launch fer_perception camera_fer.launch.py rgb_topic:=/camera/image_raw
    ros2 launch fer_perception camera_fer.launch.py rgb_topic:=/camera/image_raw/compressed \\
        rgb_transport:=compressed rviz:=true
    ros2 launch fer_perception camera_fer.launch.py bag:=recording

Every node parameter is a launch argument (generated from fer_perception/ros/params.py); this file changes
the defaults of the input topics and switches the event path off.
"""

from fer_perception.ros import launch_common

#: Defaults of this launch file that differ from the parameter table.
DEFAULTS = {
    "event_topic": "",
    "aps_topic": "",
    "rgb_topic": "/camera/image_raw",
    "snn_checkpoint": "",
    "event_faces_from": "none",
    "frame_source": "rgb",
}
#: (name, default, description) of every launch argument of this file.
ARGUMENTS = launch_common.arguments(DEFAULTS)


def generate_launch_description():
    return launch_common.launch_description(ARGUMENTS, driver=False)
