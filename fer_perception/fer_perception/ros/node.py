"""The ``fer_perception`` ROS 2 node: a thin rclpy layer over :class:`fer_perception.runtime.live.LiveRunner`.

Subscriptions
    ``event_topic`` (type from ``event_msg_type``; a *raw* subscription: the callback gets the CDR bytes and
    decodes them with numpy, never through rclpy's per-event message objects), ``aps_topic`` and
    ``rgb_topic`` (sensor_msgs/Image or CompressedImage, decoded by :mod:`fer_perception.images`, no
    cv_bridge). QoS: :mod:`fer_perception.ros.qos`.
Publications (relative names, namespace ``fer`` by default)
    ``emotion/events``, ``emotion/frames`` (fer_perception_msgs/Emotion), ``demographics``
    (fer_perception_msgs/Demographics), ``annotated_image`` and ``event_frame`` (sensor_msgs/Image, computed only
    while someone subscribes), ``/diagnostics`` (diagnostic_msgs/DiagnosticArray), and the REP-155 topics
    when ``rep155`` is true (:mod:`fer_perception.ros.rep155`).
Parameters
    :mod:`fer_perception.ros.params` (declared with descriptors and ranges; the ``[dynamic]`` ones change at
    run time through the set-parameters callback).

Run: ``ros2 run fer_perception fer_perception_node --ros-args --params-file config/fer_perception.yaml`` or the
launch files. The ROS-free helpers here (:func:`install_hint`, :func:`split_type`) are tested without ROS.
"""

from __future__ import annotations

import importlib
import sys
import time
from typing import Any, Dict, List, Optional, Sequence, Tuple

from fer_perception.errors import ConfigError, DependencyError, FerPerceptionError

NODE_NAME = "fer_perception"

#: Where each message package comes from (the error message when it is missing says this).
PACKAGE_SOURCES: Dict[str, str] = {
    "dv_ros2_msgs": "iniVation dv-ros2: build from source in your workspace "
                    "(git clone https://gitlab.com/inivation/dv/dv-ros2 into ws/src, then colcon build)",
    "dvs_msgs": "the ROS 2 port of rpg_dvs_ros: build its dvs_msgs package from source in your workspace",
    "prophesee_event_msgs": "Prophesee's ROS 2 wrapper: build prophesee_event_msgs from source in your workspace",
    "event_camera_msgs": "ros-event-camera: sudo apt install ros-$ROS_DISTRO-event-camera-msgs (where released), "
                         "or build https://github.com/ros-event-camera/event_camera_msgs from source",
    "hri_msgs": "ROS4HRI: sudo apt install ros-$ROS_DISTRO-hri-msgs (where released), or build "
                "https://github.com/ros4hri/hri_msgs from source",
    "fer_perception_msgs": "this repository: build fer_perception_msgs with colcon in the same workspace and "
                           "source install/setup.bash",
    "diagnostic_msgs": "sudo apt install ros-$ROS_DISTRO-diagnostic-msgs",
}


def split_type(msg_type: str) -> Tuple[str, str]:
    """``pkg/msg/Type`` or ``pkg/Type`` -> ``(pkg, Type)``; ConfigError otherwise."""
    parts = [p for p in str(msg_type).strip().split("/") if p]
    if len(parts) == 2 or (len(parts) == 3 and parts[1] == "msg"):
        return parts[0], parts[-1]
    raise ConfigError(f"message type {msg_type!r} is not of the form pkg/msg/Type")


def install_hint(package: str) -> str:
    """How to get ``package`` (for the error message when its import fails)."""
    src = PACKAGE_SOURCES.get(package, f"install or build the ROS package {package}")
    return f"the ROS message package {package!r} is not available: {src}; then source the workspace again"


def import_message_class(msg_type: str) -> Any:
    """The generated Python class of ``msg_type``; DependencyError with the install hint when missing."""
    pkg, name = split_type(msg_type)
    try:
        module = importlib.import_module(f"{pkg}.msg")
    except ImportError as exc:
        raise DependencyError(install_hint(pkg)) from exc
    try:
        return getattr(module, name)
    except AttributeError:
        raise DependencyError(f"{pkg}.msg has no message {name!r} (is the installed {pkg} too old?)") from None


def stamp_ns(header: Any) -> int:
    return int(header.stamp.sec) * 1_000_000_000 + int(header.stamp.nanosec)


class FerPerceptionNode:
    """The node (composition over ``rclpy.node.Node`` so this module imports without ROS).

    Build with :meth:`create`; ``self.node`` is the rclpy node, ``self.runner`` the live runner.
    """

    def __init__(self, node: Any) -> None:
        self.node = node
        self.log = node.get_logger()
        self.runner = None
        self.rep155 = None
        self._last_diag: Optional[dict] = None
        self._subs: List[Any] = []

    # ------------------------------------------------------------------------------------ construction
    @classmethod
    def create(cls, namespace: Optional[str] = None, pipeline: Any = None,
               parameter_overrides: Optional[Sequence[Any]] = None) -> Optional["FerPerceptionNode"]:
        """Create, declare, load and subscribe. Returns None (after logging why) when the node cannot run:
        a missing message package, an invalid parameter, a model that does not load."""
        from rclpy.node import Node

        from fer_perception.ros.topics import DEFAULT_NAMESPACE

        node = Node(NODE_NAME, namespace=DEFAULT_NAMESPACE if namespace is None else namespace,
                    parameter_overrides=list(parameter_overrides or []))
        self = cls(node)
        try:
            values = self._declare_parameters()
            self._setup(values, pipeline)
        except (DependencyError, ConfigError, FerPerceptionError) as exc:
            self.log.error(f"fer_perception cannot start: {exc}")
            self.destroy()
            return None
        return self

    def _declare_parameters(self) -> Dict[str, Any]:
        from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor, ParameterType
        from rclpy.exceptions import InvalidParameterTypeException, InvalidParameterValueException

        from fer_perception.ros import params

        types = {"bool": ParameterType.PARAMETER_BOOL, "int": ParameterType.PARAMETER_INTEGER,
                 "float": ParameterType.PARAMETER_DOUBLE, "str": ParameterType.PARAMETER_STRING}
        values = {}
        for p in params.PARAMETERS:
            d = ParameterDescriptor(name=p.name, description=p.description, read_only=p.read_only,
                                    additional_constraints=p.constraint_text())
            if p.type in types:
                d.type = types[p.type]
            else:
                d.dynamic_typing = True  # 'sensor' / [x, y, w, h], 'identity' / 9 floats
            if p.type == "int" and (p.min is not None or p.max is not None):
                d.integer_range = [IntegerRange(from_value=int(p.min), to_value=int(p.max), step=1)]
            elif p.type == "float" and (p.min is not None or p.max is not None):
                d.floating_point_range = [FloatingPointRange(from_value=float(p.min), to_value=float(p.max),
                                                             step=0.0)]
            try:
                par = self.node.declare_parameter(p.name, p.default, d)
            except (InvalidParameterTypeException, InvalidParameterValueException) as exc:
                raise ConfigError(f"parameter {p.name}: {exc} (expected {p.ros_type}"
                                  f"{', ' + p.constraint_text() if p.constraint_text() else ''})") from exc
            values[p.name] = params.validate(p.name, par.value)
        self.node.add_on_set_parameters_callback(self._on_set_parameters)
        return values

    def _setup(self, values: Dict[str, Any], pipeline: Any) -> None:
        from diagnostic_msgs.msg import DiagnosticArray
        from sensor_msgs.msg import CompressedImage, Image

        from fer_perception.ros import params, qos, topics
        from fer_perception.runtime.live import LiveRunner

        settings = params.node_settings(values)
        Emotion = import_message_class("fer_perception_msgs/msg/Emotion")
        Demographics = import_message_class("fer_perception_msgs/msg/Demographics")
        event_cls = import_message_class(settings.event_msg_type) if settings.event_topic else None
        if settings.rep155:
            import_message_class("hri_msgs/msg/Expression")
        if pipeline is None:
            from fer_perception.pipeline import Pipeline

            t0 = time.monotonic()
            pipeline = Pipeline(params.to_pipeline_config(values))
            self.log.info(f"models loaded in {time.monotonic() - t0:.1f} s")
        self.msg = {"Emotion": Emotion, "Demographics": Demographics, "Image": Image,
                    "DiagnosticArray": DiagnosticArray}
        n = self.node
        classes = {topics.EMOTION_TYPE: Emotion, topics.DEMOGRAPHICS_TYPE: Demographics, topics.IMAGE_TYPE: Image}
        self.pub = {
            key: n.create_publisher(classes[msgtype], name,
                                    (qos.IMAGES_OUT if msgtype == topics.IMAGE_TYPE else qos.RESULTS).to_rclpy())
            for key, (name, msgtype) in topics.OUTPUTS.items()
        }
        self.pub["diagnostics"] = n.create_publisher(DiagnosticArray, topics.DIAGNOSTICS, qos.DIAGNOSTICS.to_rclpy())
        if settings.rep155:
            from fer_perception.ros.rep155 import Rep155Publisher

            source = "rgb" if settings.rgb_topic else "aps"
            self.rep155 = Rep155Publisher(n, source=source)
        self.runner = LiveRunner(pipeline, self._on_output, params.to_live_config(values),
                                 event_type=settings.event_msg_type, wants=self._wants,
                                 clock=getattr(pipeline, "clock", None), logger=self.log.warning)
        device = self.runner.device()
        if device.startswith("cpu"):
            self.log.info("running the models on the CPU (no CUDA GPU found or device:=cpu); "
                          "expect a few windows per second")
        else:
            self.log.info(f"running the models on {device}")
        if event_cls is not None:
            eq = qos.events_qos(settings.event_qos_depth, settings.event_qos_reliability).to_rclpy()
            self._subs.append(n.create_subscription(event_cls, settings.event_topic, self._on_events, eq,
                                                    raw=True))
            self.log.info(f"events: {settings.event_topic} ({settings.event_msg_type}, "
                          f"{settings.event_qos_reliability}, depth {settings.event_qos_depth})")
        iq = qos.images_qos(settings.image_qos_reliability).to_rclpy()
        for source, topic, compressed in settings.image_inputs():
            cls_ = CompressedImage if compressed else Image
            self._subs.append(n.create_subscription(cls_, topic, self._image_callback(source), iq))
            self.log.info(f"{source} images: {topic} ({cls_.__name__})")
        if not self._subs:
            raise ConfigError("no input: event_topic, aps_topic and rgb_topic are all empty")
        self.timer = n.create_timer(float(values["diagnostics_period"]), self._publish_diagnostics)
        self.runner.start()

    # ------------------------------------------------------------------------------------ callbacks
    def _on_events(self, data: bytes) -> None:
        self.runner.on_event_message(data)

    def _image_callback(self, source: str):
        from fer_perception.images import image_from_msg

        def callback(msg: Any) -> None:
            self.runner.on_image(source, stamp_ns(msg.header), msg.header.frame_id,
                                 decode=lambda: image_from_msg(msg))
        return callback

    def _wants(self, kind: str) -> bool:
        if kind == "annotated":
            return self.pub["annotated"].get_subscription_count() > 0
        if kind == "event_frame":
            return self.pub["event_frame"].get_subscription_count() > 0
        if kind == "image":
            return self.rep155 is not None
        return True

    def _on_set_parameters(self, changes: List[Any]) -> Any:
        from rcl_interfaces.msg import SetParametersResult

        from fer_perception.ros import params

        values = {p.name: p.value for p in changes}
        ok, reason = params.check_runtime_changes(values)
        if ok and self.runner is not None:
            live = params.live_settings({k: v for k, v in values.items() if k in params.DYNAMIC})
            if live:
                self.runner.update_settings(**live)
                self.log.info(f"changed at run time: {live}")
        return SetParametersResult(successful=ok, reason=reason)

    # ------------------------------------------------------------------------------------ outputs
    def _on_output(self, out: Any) -> None:
        from fer_perception.messages import demographics_fields, emotion_fields, image_fields
        from fer_perception.ros.convert import fill_message

        Emotion, Demographics, Image = self.msg["Emotion"], self.msg["Demographics"], self.msg["Image"]
        if out.kind == "event_frame":
            if out.annotated is not None:
                self.pub["event_frame"].publish(fill_message(Image(), image_fields(out.annotated, out.stamp_ns,
                                                                                   out.frame_id)))
            return
        key = "emotion_events" if out.kind == "events" else "emotion_frames"
        for e in out.emotions:
            self.pub[key].publish(fill_message(Emotion(), emotion_fields(e)))
        for d in out.demographics:
            self.pub["demographics"].publish(fill_message(Demographics(), demographics_fields(d)))
        if out.kind == "frame" and out.annotated is not None and self._wants("annotated"):
            self.pub["annotated"].publish(fill_message(Image(), image_fields(out.annotated, out.stamp_ns,
                                                                             out.frame_id)))
        if self.rep155 is not None:
            m = self.rep155.mapper
            if out.kind == "frame":
                self.rep155.publish(m.update_frame(out.source, out.stamp_ns, out.frame_id, out.tracks,
                                                   out.emotions, out.demographics, out.image))
            else:
                self.rep155.publish(m.update_events(out.emotions))

    def _publish_diagnostics(self) -> None:
        from diagnostic_msgs.msg import DiagnosticStatus, KeyValue

        from fer_perception.ros.convert import diagnostic_status_fields, fill_message

        diag = self.runner.diagnostics()
        fields = diagnostic_status_fields(diag, self._last_diag,
                                          name=f"{self.node.get_fully_qualified_name()}: inference")
        self._last_diag = diag
        arr = self.msg["DiagnosticArray"]()
        arr.header.stamp = self.node.get_clock().now().to_msg()
        arr.status = [fill_message(DiagnosticStatus(), fields, {"values": KeyValue})]
        self.pub["diagnostics"].publish(arr)

    # ------------------------------------------------------------------------------------ teardown
    def destroy(self) -> None:
        if self.runner is not None:
            self.runner.stop()
        if self.rep155 is not None:
            self.rep155.destroy()
        self.node.destroy_node()


def main(args: Optional[Sequence[str]] = None) -> int:
    """Console script ``fer_perception_node``."""
    try:
        import rclpy
        from rclpy.executors import ExternalShutdownException
    except ImportError:
        print("fer_perception_node needs ROS 2 (rclpy): source /opt/ros/$ROS_DISTRO/setup.bash and your "
              "workspace's install/setup.bash first", file=sys.stderr)
        return 2
    rclpy.init(args=args)
    fer = None
    try:
        fer = FerPerceptionNode.create()
        if fer is None:
            return 1
        rclpy.spin(fer.node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        if fer is not None:
            fer.destroy()
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
