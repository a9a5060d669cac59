"""ros/params.py: the table agrees with PipelineConfig, the shipped YAML and the launch files; validation
names the parameter; run-time changes are limited to the dynamic ones. No ROS needed."""

from __future__ import annotations

import dataclasses
import importlib.util
from pathlib import Path

import pytest
import yaml

from fer_perception.errors import ConfigError
from fer_perception.pipeline import PipelineConfig
from fer_perception.ros import launch_common, params
from fer_perception.runtime.live import RUNTIME_SETTINGS, LiveConfig

PKG = Path(__file__).resolve().parents[1]
YAML = PKG / "config" / "fer_perception.yaml"


def load_launch(name):
    spec = importlib.util.spec_from_file_location(name.replace(".", "_"), PKG / "launch" / name)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)  # imports no ROS module at import time
    return mod


def test_every_pipeline_field_is_a_parameter_with_its_default():
    fields = {f.name for f in dataclasses.fields(PipelineConfig)}
    pipeline_params = {p.name for p in params.PARAMETERS if p.pipeline}
    assert pipeline_params == fields
    base = PipelineConfig()
    for p in params.PARAMETERS:
        if p.pipeline:
            assert p.default == getattr(base, p.name), p.name
    assert len({p.name for p in params.PARAMETERS}) == len(params.PARAMETERS)


def test_table_entries_are_well_formed():
    for p in params.PARAMETERS:
        assert p.type in params.TYPES and p.group in params.GROUPS and p.description, p.name
        assert params.validate(p.name, p.default) == p.default, p.name
        if p.choices:
            assert p.default in p.choices
        if p.type in ("int", "float"):
            assert p.min is not None and p.max is not None, f"{p.name}: ROS ranges need both ends"


def test_shipped_yaml_equals_the_table():
    data = yaml.safe_load(YAML.read_text())
    (key, node), = data.items()
    assert key == "/**/fer_perception"
    values = node["ros__parameters"]
    assert list(values) == [p.name for p in params.PARAMETERS]
    for p in params.PARAMETERS:
        assert values[p.name] == p.default, p.name
        if p.type == "float":
            assert isinstance(values[p.name], float), f"{p.name} must be a float literal for ROS"
    assert YAML.read_text() == params.yaml_text()
    # the same file configures replay: PipelineConfig reads it
    assert PipelineConfig.from_yaml(YAML) == PipelineConfig()


@pytest.mark.parametrize("launch_file", ["dvs_fer.launch.py", "camera_fer.launch.py"])
def test_launch_files_declare_one_argument_per_user_facing_parameter(launch_file):
    mod = load_launch(launch_file)
    names = [a[0] for a in mod.ARGUMENTS]
    assert len(names) == len(set(names))
    user = [p.name for p in params.PARAMETERS if p.launch]
    assert names[:len(user)] == user
    assert {n for n, _, _ in launch_common.LAUNCH_ONLY} <= set(names)
    for name, default, desc in mod.ARGUMENTS:
        assert isinstance(default, str) and desc
        if name in user:
            params.parse_launch_value(name, default)  # every default parses back


def test_dvs_launch_defaults_are_the_table_defaults():
    mod = load_launch("dvs_fer.launch.py")
    for name, default, _ in mod.ARGUMENTS:
        p = params._BY_NAME.get(name)
        if p is not None:
            assert params.parse_launch_value(name, default) == p.default, name
    assert {"start_driver", "driver_namespace"} <= {a[0] for a in mod.ARGUMENTS}


def test_camera_launch_switches_the_event_path_off():
    mod = load_launch("camera_fer.launch.py")
    values = {n: d for n, d, _ in mod.ARGUMENTS}
    p = launch_common.plan(values)
    overrides = p["node"]["parameters"][1]
    assert overrides["event_topic"] == "" and overrides["aps_topic"] == ""
    assert overrides["rgb_topic"] == "/camera/image_raw" and overrides["snn_checkpoint"] == ""
    cfg = params.to_pipeline_config({**params.defaults(), **overrides})
    assert cfg.snn_checkpoint == "" and cfg.event_faces_from == "none"


def test_launch_plan_bag_rviz_driver_and_overrides():
    mod = load_launch("dvs_fer.launch.py")
    values = {n: d for n, d, _ in mod.ARGUMENTS}
    p = launch_common.plan(values, driver=True)
    assert p["node"]["parameters"][1] == {}  # defaults: the parameter file decides
    assert p["node"]["parameters"][0].endswith("config/fer_perception.yaml")
    assert p["bag"] is None and p["driver"] is None and p["rviz"] is None
    values.update(bag="/data/rec1", bag_rate="0.5", bag_loop="true", rviz="true", start_driver="true",
                  smoothing_alpha="0.3", device="cuda", mapping_rgb="[1,0,0,0,1,0,0,0,1]")
    p = launch_common.plan(values, driver=True)
    assert p["bag"] == ["ros2", "bag", "play", "/data/rec1", "--rate", "0.5", "--loop"]
    assert p["driver"] is None  # a bag replaces live input
    assert p["rviz"][0] == "-d" and p["rviz"][1].endswith("rviz/fer_perception.rviz")
    assert p["node"]["parameters"][1] == {"smoothing_alpha": 0.3, "device": "cuda",
                                          "mapping_rgb": [1.0, 0, 0, 0, 1.0, 0, 0, 0, 1.0]}
    values.update(bag="")
    p = launch_common.plan(values, driver=True)
    assert p["driver"] == {"namespace": "dvs"}
    assert p["node"]["parameters"][1]["event_topic"] == "/dvs/camera/events"  # dv-ros2's topics
    assert p["node"]["parameters"][1]["aps_topic"] == "/dvs/camera/frame"
    values.update(event_topic="/my/events")
    assert launch_common.plan(values, driver=True)["node"]["parameters"][1]["event_topic"] == "/my/events"
    with pytest.raises(ConfigError, match="launch argument smoothing_alpha"):
        launch_common.plan({**values, "smoothing_alpha": "fast"})


def test_rviz_config_shows_the_image_topics():
    data = yaml.safe_load((PKG / "rviz" / "fer_perception.rviz").read_text())
    topics = {d["Topic"]["Value"] for d in data["Visualization Manager"]["Displays"]
              if d["Class"] == "rviz_default_plugins/Image"}
    assert topics == {"/fer/annotated_image", "/fer/event_frame"}


# ---------------------------------------------------------------------------------------------- validation
@pytest.mark.parametrize("name,value,match", [
    ("timesteps", 0, r"timesteps must be within \[1, 64\]"),
    ("timesteps", 2.5, "timesteps must be an integer"),
    ("smoothing_alpha", 1.5, "smoothing_alpha must be within"),
    ("smoothing_alpha", float("nan"), "smoothing_alpha must be finite"),
    ("device", "tpu", "device must be one of"),
    ("event_msg_type", "sensor_msgs/msg/Image", "event_msg_type must be one of"),
    ("annotate", "yes", "annotate must be a bool"),
    ("event_fallback_roi", [1, 2, 0, 4], "event_fallback_roi must be"),
    ("mapping_aps", [1, 2, 3], "mapping_aps must be"),
    ("event_topic", 5, "event_topic must be a string"),
    ("no_such_parameter", 1, "unknown parameter 'no_such_parameter'"),
])
def test_validation_errors_name_the_parameter(name, value, match):
    with pytest.raises(ConfigError, match=match):
        params.validate(name, value)


def test_box_and_mapping_accept_lists_strings_and_arrays():
    import array

    assert params.validate("event_fallback_roi", "10, 20, 30, 40") == [10, 20, 30, 40]
    assert params.validate("event_fallback_roi", array.array("q", [1, 2, 3, 4])) == [1, 2, 3, 4]
    assert params.validate("event_fallback_roi", "none") == "none"
    h = params.validate("mapping_rgb", array.array("d", [1, 0, 5, 0, 1, 6, 0, 0, 1]))
    assert h == [1.0, 0.0, 5.0, 0.0, 1.0, 6.0, 0.0, 0.0, 1.0]
    cfg = params.to_pipeline_config({"mapping_rgb": h, "event_fallback_roi": "0,0,32,32"})
    assert cfg.mapping_rgb == h and cfg.event_fallback_roi == [0, 0, 32, 32]


def test_mapping_onto_pipeline_live_and_node_settings():
    values = {"events_per_frame": 1000, "timesteps": 4, "buffer_events": 50_000, "smoothing": "none",
              "event_queue_events": 123, "min_confidence": 0.4, "event_frame_hz": 0.0, "rgb_topic": "/cam",
              "rgb_transport": "compressed", "aps_topic": "", "use_sim_time": True}
    cfg = params.to_pipeline_config(values)
    assert (cfg.events_per_frame, cfg.timesteps, cfg.buffer_events, cfg.smoothing) == (1000, 4, 50_000, "none")
    live = params.to_live_config(values)
    assert isinstance(live, LiveConfig)
    assert (live.max_queued_events, live.min_confidence, live.event_frame_hz) == (123, 0.4, 0.0)
    node = params.node_settings(values)
    assert node.image_inputs() == [("rgb", "/cam", True)]
    assert node.event_topic == "/dvs/events" and node.event_qos_depth == 1000
    # PipelineConfig's own cross-field checks still apply
    with pytest.raises(ConfigError, match="buffer_events"):
        params.to_pipeline_config({"buffer_events": 100})


def test_runtime_changes_only_for_dynamic_parameters():
    assert set(params.DYNAMIC) == {"min_confidence", "event_frame_hz", "event_frame_ms", "annotate",
                                   "detect_every", "tracker_iou", "smoothing_alpha"}
    assert set(params.live_settings({n: params.get(n).default for n in params.DYNAMIC})) <= set(RUNTIME_SETTINGS)
    assert params.check_runtime_changes({"smoothing_alpha": 0.2, "use_sim_time": True}) == (True, "")
    ok, reason = params.check_runtime_changes({"timesteps": 3})
    assert not ok and "timesteps can only be set at start-up" in reason
    ok, reason = params.check_runtime_changes({"min_confidence": 2.0})
    assert not ok and "min_confidence must be within" in reason
    assert params.live_settings({"min_confidence": 0.5, "use_sim_time": True}) == {"min_confidence": 0.5}


def test_markdown_table_lists_every_parameter():
    table = params.markdown_table()
    for p in params.PARAMETERS:
        assert f"| `{p.name}` |" in table
    assert table.count("run time") == len(params.DYNAMIC)
