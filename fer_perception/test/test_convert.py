"""`fer-perception convert` and its core (frame sources, face crop, message splitting, h5 and bag outputs)."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import h5py
import numpy as np
import pytest

from fer_perception.commands import convert as convert_command
from fer_perception.errors import ConfigError, FerPerceptionError
from fer_perception.events.batch import EventBatch
from fer_perception.events.cdr import decode_event_array
from fer_perception.synth.emulator import DvsEmulator, EmulatorConfig
from fer_perception.synth.faces import SyntheticFaceConfig, render_clip
from fer_perception.synth.video_to_events import (
    FaceCropper,
    NoFaceError,
    VideoInputError,
    list_images,
    open_frames,
    split_by_period,
)


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    d = tmp_path_factory.mktemp("conv")
    clip = render_clip("surprise", 2, SyntheticFaceConfig.scene(n_frames=12, width=320, height=240,
                                                                face_size=(0.6, 0.7)))
    frames = d / "frames"
    frames.mkdir()
    for i, f in enumerate(clip.frames):  # names whose natural order differs from the plain string order
        cv2.imwrite(str(frames / f"img{i}.png"), cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    video = d / "face.avi"
    w = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 25, (320, 240))
    for f in clip.frames:
        w.write(cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    w.release()
    return d, clip, frames, video


def main(argv):
    """Run ``fer-perception convert`` the way the CLI does (parser from the command module, then run)."""
    import argparse

    assert argv[0] == "convert"
    parser = argparse.ArgumentParser(prog="fer-perception convert")
    convert_command.add_arguments(parser)
    return convert_command.run(parser.parse_args(argv[1:]))


def _bag_events(path: Path):
    from rosbags.rosbag2 import Reader

    from fer_perception.msgdefs import get_typestore

    ts = get_typestore("humble")
    msgs, images = [], []
    with Reader(path) as r:
        types = {c.topic: c.msgtype for c in r.connections}
        for conn, t, raw in r.messages():
            if conn.msgtype == "sensor_msgs/msg/Image":
                images.append((t, ts.deserialize_cdr(bytes(raw), conn.msgtype)))
            else:
                msgs.append((conn.topic, t, decode_event_array(bytes(raw))))
    return types, msgs, images


def test_image_folder_in_natural_order_equals_direct_emulation(scene, tmp_path):
    d, clip, frames, _ = scene
    assert [p.name for p in list_images(frames)][:3] == ["img0.png", "img1.png", "img2.png"]
    assert list_images(frames)[-1].name == "img11.png"
    out = tmp_path / "f.h5"
    assert main(["convert", str(frames), "-o", str(out), "--quiet"]) == 0
    with h5py.File(out, "r") as f:
        ev = f["events"][()]
    assert ev.dtype == np.uint32 and ev.shape[1] == 4
    # PNG is lossless: the same frames through the emulator give the same events (t in microseconds)
    direct = DvsEmulator(EmulatorConfig.paper(width=320, height=240), seed=0).emulate(clip.frames,
                                                                                      np.arange(12) / 30.0)
    np.testing.assert_array_equal(ev[:, 0], direct.t // 1000)
    np.testing.assert_array_equal(ev[:, 1], direct.x)
    np.testing.assert_array_equal(ev[:, 3], direct.p)


def test_video_to_bag_and_h5_agree(scene, tmp_path, capsys):
    _, _, _, video = scene
    out = tmp_path / "rec"
    rc = main(["convert", str(video), "-o", str(out), "--h5", "--bag", "--face-crop", "--size", "100",
               "--message-period-ms", "2", "--start-time", "5", "--image-topic", "/camera/image", "--quiet", "--json"])
    assert rc == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["fps"] == pytest.approx(25.0) and summary["sensor"] == "100x100"
    assert summary["frames_without_face"] == 0
    with h5py.File(str(out) + ".h5", "r") as f:
        ev = f["events"][()]
    types, msgs, images = _bag_events(out)
    assert types == {"/events": "dv_ros2_msgs/msg/EventArray", "/camera/image": "sensor_msgs/msg/Image"}
    assert len(images) == summary["frames"] == summary["images"] == 12
    t_img, img = images[1]
    assert (img.width, img.height, img.encoding) == (100, 100, "rgb8") and len(img.data) == 100 * 100 * 3
    assert t_img == 5_000_000_000 + 40_000_000 and img.header.frame_id == "dvs"
    assert len(msgs) == summary["messages"] > 10
    batch = EventBatch.concatenate([m for _, _, m in msgs])
    assert len(batch) == len(ev) == summary["events"]
    np.testing.assert_array_equal(batch.t, ev[:, 0].astype(np.int64) * 1000 + 5_000_000_000)
    np.testing.assert_array_equal(batch.x, ev[:, 1])
    for _, t, m in msgs:
        assert m.width == 100 and m.height == 100 and m.frame_id == "dvs"
        assert m.stamp_ns == int(m.t[-1]) == t
        assert int(m.t[-1]) // 2_000_000 == int(m.t[0]) // 2_000_000  # one 2 ms period per message
    assert np.all(np.diff(batch.t) >= 0) and np.all(batch.t % 1000 == 0)


def test_face_crop_is_centred_on_the_nose(scene):
    _, clip, _, _ = scene
    cropper = FaceCropper(size=200)
    crops = cropper.process(clip.frames[:3])
    assert crops.shape == (3, 200, 200, 3)
    face_h = clip.boxes[0, 3]
    assert np.linalg.norm(cropper.center - clip.nose[0]) < 0.08 * face_h
    # the face fills the crop about as much as in the FerDVS-style rendering (face height ~0.72-0.82 of side)
    assert 0.6 < face_h / cropper.side < 0.95


def test_face_crop_follow_tracks_a_moving_face():
    clip = render_clip("happy", 4, SyntheticFaceConfig.scene(n_frames=8, width=320, height=240,
                                                             face_size=(0.6, 0.6), translation=0.3,
                                                             motion_speed_hz=2.0))
    fixed, follow = FaceCropper(size=64), FaceCropper(size=64, follow=True, alpha=1.0)
    fixed.process(clip.frames)
    follow.process(clip.frames)
    assert np.linalg.norm(follow.center - clip.nose[-1]) < np.linalg.norm(fixed.center - clip.nose[-1])


def test_face_that_appears_late_is_cropped_from_the_first_frame(scene, tmp_path):
    _, clip, _, _ = scene
    folder = tmp_path / "late"
    folder.mkdir()
    for i in range(40):  # 36 blank frames (more than one 32-frame chunk), then the face
        img = np.full((240, 320, 3), 90, np.uint8) if i < 36 else clip.frames[i - 36]
        cv2.imwrite(str(folder / f"{i:03d}.png"), img)
    out = tmp_path / "late.h5"
    assert main(["convert", str(folder), "-o", str(out), "--face-crop", "--size", "64", "--quiet"]) == 0
    with h5py.File(out, "r") as f:
        ev = f["events"][()]
    # the switch from the blank frame to the face makes events at frame 36 (t = 36/30 s)
    assert len(ev) > 100 and ev[0, 0] > 35 * 1e6 / 30


def test_no_face_raises(tmp_path):
    with pytest.raises(NoFaceError, match="no face"):
        FaceCropper(size=64).process(np.full((3, 120, 160, 3), 128, np.uint8))
    folder = tmp_path / "blank"
    folder.mkdir()
    for i in range(3):
        cv2.imwrite(str(folder / f"{i}.png"), np.full((120, 160, 3), 128, np.uint8))
    with pytest.raises(NoFaceError, match="no face"):
        main(["convert", str(folder), "-o", str(tmp_path / "b.h5"), "--face-crop", "--quiet"])


def test_split_by_period_holds_the_open_bin():
    t = np.array([100, 900, 1000, 1500, 2100, 2999, 3000])
    b = EventBatch.from_arrays(np.zeros(7), np.zeros(7), t, np.ones(7), 10, 10)
    msgs, rest = split_by_period(b, 1000, hold_from_ns=2500)
    assert [list(m.t) for m in msgs] == [[100, 900], [1000, 1500]]
    assert [m.stamp_ns for m in msgs] == [900, 1500]
    assert list(rest.t) == [2100, 2999, 3000]
    msgs, rest = split_by_period(rest, 1000)
    assert [list(m.t) for m in msgs] == [[2100, 2999], [3000]] and len(rest) == 0
    with pytest.raises(ConfigError):
        split_by_period(b, 0)


def test_output_selection_and_errors(scene, tmp_path):
    _, _, frames, _ = scene
    out = tmp_path / "bagdir"
    assert main(["convert", str(frames), "-o", str(out), "--quiet", "--max-frames", "4", "--size", "64x48"]) == 0
    assert (out / "metadata.yaml").is_file()
    # existing outputs are kept unless --overwrite
    with pytest.raises(FerPerceptionError, match="exists"):
        main(["convert", str(frames), "-o", str(out), "--quiet", "--max-frames", "4"])
    assert main(["convert", str(frames), "-o", str(out), "--quiet", "--max-frames", "4", "--overwrite"]) == 0
    with pytest.raises(VideoInputError, match="does not exist"):
        main(["convert", str(tmp_path / "missing.mp4"), "-o", str(tmp_path / "x.h5"), "--quiet"])
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(VideoInputError, match="no images"):
        open_frames(empty)
    with pytest.raises(VideoInputError, match="at least 2 frames"):
        main(["convert", str(frames), "-o", str(tmp_path / "y.h5"), "--quiet", "--max-frames", "1"])
    with pytest.raises(ConfigError, match="needs a bag"):
        main(["convert", str(frames), "-o", str(tmp_path / "i.h5"), "--quiet", "--image-topic", "/img"])
    with pytest.raises(SystemExit):
        main(["convert", str(frames), "-o", str(tmp_path / "z.h5"), "--size", "abc"])


def test_the_cli_runs_convert_and_reports_errors(scene, tmp_path, capsys):
    try:
        from fer_perception import cli
    except ImportError as exc:  # e.g. run from the repository root, where ./fer_perception shadows the package
        pytest.skip(f"fer_perception.cli not importable here: {exc}")
    _, _, frames, _ = scene
    out = tmp_path / "c.h5"
    assert cli.main(["convert", str(frames), "-o", str(out), "--quiet", "--max-frames", "3"]) == 0
    assert out.is_file()
    assert cli.main(["convert", str(frames), "-o", str(out), "--quiet", "--max-frames", "3"]) == 2
    assert "exists" in capsys.readouterr().err
