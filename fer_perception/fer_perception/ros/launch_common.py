"""What the launch files share: their arguments (generated from :mod:`fer_perception.ros.params`) and the
actions they start. Importing this module needs no ROS; :func:`launch_description` imports ``launch`` and
``launch_ros`` (Humble and Jazzy APIs: DeclareLaunchArgument, OpaqueFunction, ExecuteProcess, Node).

Launch arguments default to the parameter table's defaults (or the launch file's own defaults). Only values
that differ from the table's default are passed to the node as overrides, after the parameter file
(``config:=``), so the file's settings stay in force unless an argument changes them.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from fer_perception.ros import params, topics

PACKAGE = "fer_perception"
EXECUTABLE = "fer_perception_node"

#: Launch-only arguments: (name, default, description). ``config``/``rviz_config`` default to the installed
#: share files (resolved at launch time).
LAUNCH_ONLY: Tuple[Tuple[str, str, str], ...] = (
    ("namespace", topics.DEFAULT_NAMESPACE, "Namespace of the fer_perception node."),
    ("config", "", "Parameter file ('' = the installed config/fer_perception.yaml)."),
    ("bag", "", "Play this rosbag2 (ros2 bag play) instead of live input ('' = live)."),
    ("bag_rate", "1.0", "Playback rate of bag."),
    ("bag_loop", "false", "Loop the bag."),
    ("rviz", "false", "Open rviz2 with rviz/fer_perception.rviz."),
    ("log_level", "info", "Log level of the node (debug, info, warn, error)."),
)
#: Extra arguments of dvs_fer.launch.py: the optional dv-ros2 driver.
DRIVER_ARGS: Tuple[Tuple[str, str, str], ...] = (
    ("start_driver", "false", "Also start the dv-ros2 capture node (package dv_ros2_capture) for a live camera."),
    ("driver_namespace", "dvs", "Namespace of the driver (its topics: <ns>/camera/events, <ns>/camera/frame)."),
)


def arguments(overrides: Optional[Mapping[str, str]] = None,
              extra: Sequence[Tuple[str, str, str]] = ()) -> List[Tuple[str, str, str]]:
    """Every launch argument ``(name, default, description)``: one per user-facing parameter, then the
    launch-only ones; ``overrides`` changes defaults (strings) of this launch file."""
    ov = dict(overrides or {})
    out = []
    for name, default, desc in list(params.launch_arguments()) + list(LAUNCH_ONLY) + list(extra):
        out.append((name, ov.pop(name, default), desc))
    if ov:
        raise KeyError(f"launch defaults for unknown arguments: {', '.join(sorted(ov))}")
    return out


def _true(text: str) -> bool:
    return str(text).strip().lower() in ("true", "1", "yes", "on")


def share_file(*parts: str) -> str:
    """A file of the installed package share (ament index), else of the source tree (tests, no ROS)."""
    try:
        from ament_index_python.packages import PackageNotFoundError, get_package_share_directory

        try:
            return os.path.join(get_package_share_directory(PACKAGE), *parts)
        except PackageNotFoundError:
            pass
    except ImportError:
        pass
    return str(Path(__file__).resolve().parents[2].joinpath(*parts))


def plan(values: Mapping[str, str], driver: bool = False) -> Dict[str, Any]:
    """What to start for the given launch argument values, as plain data (tested without ROS).

    Returns ``{"node": {namespace, parameters: [config path, overrides dict], log_level},
    "bag": [cmd...] or None, "driver": {namespace} or None, "rviz": [args] or None}``.
    """
    config = values.get("config") or share_file("config", "fer_perception.yaml")
    overrides = params.launch_overrides({k: v for k, v in values.items() if k in {p.name for p in params.PARAMETERS}})
    bag = str(values.get("bag", "")).strip()
    out: Dict[str, Any] = {
        "node": {"namespace": values.get("namespace", topics.DEFAULT_NAMESPACE), "parameters": [config, overrides],
                 "log_level": values.get("log_level", "info")},
        "bag": None, "driver": None, "rviz": None,
    }
    if bag:
        cmd = ["ros2", "bag", "play", bag, "--rate", str(float(values.get("bag_rate", "1.0")))]
        if _true(values.get("bag_loop", "false")):
            cmd.append("--loop")
        out["bag"] = cmd
    elif driver and _true(values.get("start_driver", "false")):
        ns = str(values.get("driver_namespace", "dvs")).strip("/")
        out["driver"] = {"namespace": ns}
        # dv-ros2's capture node publishes <ns>/camera/events and <ns>/camera/frame: follow it unless the
        # topics were set explicitly
        for name, leaf in (("event_topic", "camera/events"), ("aps_topic", "camera/frame")):
            if name not in overrides:
                overrides[name] = f"/{ns}/{leaf}" if ns else f"/{leaf}"
    if _true(values.get("rviz", "false")):
        out["rviz"] = ["-d", share_file("rviz", "fer_perception.rviz")]
    return out


def launch_description(args: Sequence[Tuple[str, str, str]], driver: bool = False):
    """The LaunchDescription: one DeclareLaunchArgument per argument and an OpaqueFunction that starts the
    node, and the bag player / driver / rviz2 as asked."""
    from launch import LaunchDescription
    from launch.actions import DeclareLaunchArgument, ExecuteProcess, OpaqueFunction
    from launch_ros.actions import Node

    def setup(context, *_, **__):
        values = {name: context.launch_configurations.get(name, default) for name, default, _ in args}
        p = plan(values, driver=driver)
        n = p["node"]
        actions = [Node(package=PACKAGE, executable=EXECUTABLE, name="fer_perception", namespace=n["namespace"],
                        parameters=n["parameters"], output="screen", emulate_tty=True,
                        arguments=["--ros-args", "--log-level", n["log_level"]])]
        if p["bag"]:
            actions.append(ExecuteProcess(cmd=p["bag"], output="screen"))
        if p["driver"]:
            actions.append(Node(package="dv_ros2_capture", executable="dv_ros2_capture_node",
                                name="dv_ros2_capture_node", namespace=p["driver"]["namespace"], output="screen"))
        if p["rviz"]:
            actions.append(Node(package="rviz2", executable="rviz2", name="rviz2", arguments=p["rviz"],
                                output="screen"))
        return actions

    decl = [DeclareLaunchArgument(name, default_value=default, description=desc) for name, default, desc in args]
    return LaunchDescription(decl + [OpaqueFunction(function=setup)])
