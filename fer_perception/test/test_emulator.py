"""The v2e-style DVS emulator: event counts, timestamps, state across calls, noise models, errors."""

from __future__ import annotations

import math

import numpy as np
import pytest

from fer_perception.errors import ConfigError, ImageError
from fer_perception.events.batch import EventBatch
from fer_perception.synth.emulator import DvsEmulator, EmulatorConfig, EmulatorError, emulate_frames, lin_log, to_luma
from fer_perception.synth.faces import SyntheticFaceConfig, render_clip

EXACT = EmulatorConfig(sigma_threshold=0.0, refractory_s=0.0)


def flat(values, h=4, w=5):
    return np.stack([np.full((h, w), v, np.float32) for v in values])


def test_paper_preset_matches_the_spiking_fer_conversion():
    c = EmulatorConfig.paper()
    assert (c.pos_threshold, c.neg_threshold, c.sigma_threshold) == (0.2, 0.2, 0.02)
    assert (c.leak_rate_hz, c.shot_noise_rate_hz, c.cutoff_hz) == (0.0, 0.0, 0.0)
    assert (c.fps, c.width, c.height, c.refractory_s) == (30.0, 200, 200, 0.0005)
    assert EmulatorConfig.preset("paper") == c
    with pytest.raises(ConfigError, match="preset"):
        EmulatorConfig.preset("v3")


def test_lin_log_is_linear_in_the_dark_log_above_and_continuous():
    x = np.array([0.0, 10.0, 20.0, 40.0, 255.0])
    y = lin_log(x)
    f = math.log(20) / 20
    np.testing.assert_allclose(y, [0.0, 10 * f, math.log(20), math.log(40), math.log(255)])
    assert abs(lin_log(np.array([20.0 - 1e-9]))[0] - lin_log(np.array([20.0 + 1e-9]))[0]) < 1e-8


def test_step_up_gives_floor_of_log_change_over_threshold_on_events():
    ev = emulate_frames(flat([50, 100]), np.array([0.0, 0.01]), EXACT)
    # ln(100/50) = 0.693 -> 3 ON events per pixel, none OFF
    assert len(ev) == 3 * 20 and np.all(ev.p == 1)
    counts = np.zeros((4, 5), int)
    np.add.at(counts, (ev.y, ev.x), 1)
    assert np.all(counts == 3)
    assert ev.width == 5 and ev.height == 4


def test_timestamps_are_interpolated_linearly_in_log_brightness():
    ev = emulate_frames(flat([50, 100], 1, 1), np.array([0.0, 0.01]), EXACT)
    expected = [round(k * 0.2 / math.log(2) * 0.01 * 1e9) for k in (1, 2, 3)]
    np.testing.assert_array_equal(ev.t, expected)


def test_step_down_gives_off_events_and_constant_input_gives_none():
    ev = emulate_frames(flat([100, 50]), np.array([0.0, 0.01]), EXACT)
    assert len(ev) == 60 and np.all(ev.p == 0)
    assert len(emulate_frames(flat([80, 80, 80]), np.array([0.0, 0.01, 0.02]), EXACT)) == 0


def test_reference_keeps_the_remainder_across_small_steps():
    """20 steps each well below one threshold still add up to the full number of events."""
    values = 50 * np.exp(np.linspace(0, 1.0, 21))  # total log change 1.0 = 5 thresholds, 0.05 per step
    ev = emulate_frames(flat(values, 1, 1), np.arange(21) / 30, EXACT)
    assert len(ev) == 5 and np.all(ev.p == 1)
    # each event falls in the frame interval where the signal crosses k * 0.2
    np.testing.assert_allclose(ev.t / 1e9, [k * 4 / 30 for k in range(1, 6)], atol=1e-6)


def test_first_frame_only_initialises():
    emu = DvsEmulator(EXACT)
    assert len(emu.emulate(flat([10]), np.array([0.0]))) == 0 and emu.initialized


def test_refractory_period_drops_events_that_follow_too_soon():
    cfg = EmulatorConfig(sigma_threshold=0.0, refractory_s=0.004)
    ev = emulate_frames(flat([50, 100], 1, 1), np.array([0.0, 0.01]), cfg)
    # crossings at 2.89, 5.77, 8.66 ms: the second one is within 4 ms of the first and dropped
    assert len(ev) == 2
    assert np.diff(ev.t).min() >= 4_000_000


def test_threshold_mismatch_is_gaussian_per_pixel_and_seeded():
    emu = DvsEmulator(EmulatorConfig(sigma_threshold=0.02, width=100, height=100), seed=3)
    emu.emulate(np.full((1, 100, 100), 100, np.uint8), np.array([0.0]))
    assert emu.pos_thr.std() == pytest.approx(0.02, rel=0.1) and emu.pos_thr.mean() == pytest.approx(0.2, abs=0.002)
    other = DvsEmulator(EmulatorConfig(sigma_threshold=0.02, width=100, height=100), seed=4)
    other.emulate(np.full((1, 100, 100), 100, np.uint8), np.array([0.0]))
    assert not np.array_equal(emu.pos_thr, other.pos_thr)


def _face_clip():
    return render_clip("surprise", 1, SyntheticFaceConfig(width=64, height=64, n_frames=20))


@pytest.mark.parametrize("config", [EmulatorConfig.paper(width=64, height=64),
                                    EmulatorConfig.noisy(width=64, height=64)], ids=["paper", "noisy"])
def test_chunked_input_gives_exactly_the_events_of_one_call(config):
    clip = _face_clip()
    whole = DvsEmulator(config, seed=7).emulate(clip.frames, clip.times_s)
    emu = DvsEmulator(config, seed=7)
    parts = [emu.emulate(clip.frames[i:i + j], clip.times_s[i:i + j]) for i, j in ((0, 1), (1, 6), (7, 13))]
    joined = EventBatch.concatenate(parts)
    assert len(whole) > 1000
    for k in "xytp":
        np.testing.assert_array_equal(getattr(whole, k), getattr(joined, k))
    # also without explicit timestamps (frame times from fps)
    a = DvsEmulator(config, seed=7).emulate(clip.frames)
    emu = DvsEmulator(config, seed=7)
    b = EventBatch.concatenate([emu.emulate(clip.frames[:9]), emu.emulate(clip.frames[9:])])
    np.testing.assert_array_equal(a.t, b.t)


def test_events_are_sorted_deterministic_and_in_bounds():
    clip = _face_clip()
    cfg = EmulatorConfig.noisy(width=64, height=64)
    a = DvsEmulator(cfg, seed=1).emulate(clip.frames, clip.times_s)
    b = DvsEmulator(cfg, seed=1).emulate(clip.frames, clip.times_s)
    assert np.all(np.diff(a.t) >= 0)
    assert a.t[0] > 0 and a.t[-1] <= round(clip.times_s[-1] * 1e9)
    a.check_bounds()
    for k in "xytp":
        np.testing.assert_array_equal(getattr(a, k), getattr(b, k))
    assert a.x.dtype == np.uint16 and a.t.dtype == np.int64 and a.p.dtype == np.uint8
    assert 0.2 < a.p.mean() < 0.8


def test_leak_events_fire_at_about_the_leak_rate_on_a_static_scene():
    cfg = EmulatorConfig(leak_rate_hz=2.0, leak_jitter_fraction=0.0, sigma_threshold=0.0, refractory_s=0.0,
                         width=20, height=20)
    n = 301
    ev = DvsEmulator(cfg, seed=0).emulate(np.full((n, 20, 20), 120, np.uint8), np.arange(n) / 30)
    rate = len(ev) / 400 / 10.0
    assert rate == pytest.approx(2.0, rel=0.1) and np.all(ev.p == 1)


def test_shot_noise_rate_and_darkness_dependence():
    cfg = EmulatorConfig(shot_noise_rate_hz=4.0, sigma_threshold=0.0, refractory_s=0.0, width=50, height=50)
    n = 91  # 3 s
    dark = DvsEmulator(cfg, seed=0).emulate(np.zeros((n, 50, 50), np.uint8), np.arange(n) / 30)
    bright = DvsEmulator(cfg, seed=0).emulate(np.full((n, 50, 50), 255, np.uint8), np.arange(n) / 30)
    dark_rate = len(dark) / 2500 / 3.0
    # in the dark: (20/275) of the way from 1 to 0.25 of the nominal rate
    assert dark_rate == pytest.approx(4.0 * (1 - 0.75 * 20 / 275), rel=0.1)
    assert len(bright) < 0.4 * len(dark)
    assert 0.4 < dark.p.mean() < 0.6


def test_rgb_and_mono_frames_agree():
    clip = _face_clip()
    rgb = emulate_frames(clip.frames, clip.times_s, EmulatorConfig.paper(width=64, height=64))
    luma = to_luma(clip.frames)
    np.testing.assert_allclose(luma[0, 10, 10], clip.frames[0, 10, 10] @ np.array([0.299, 0.587, 0.114]), atol=1e-3)
    mono = emulate_frames(luma, clip.times_s, EmulatorConfig.paper(width=64, height=64))
    np.testing.assert_array_equal(rgb.t, mono.t)


def test_bad_input_is_rejected_with_a_named_problem():
    emu = DvsEmulator(EmulatorConfig(width=5, height=4))
    with pytest.raises(EmulatorError, match="size"):
        emu.emulate(np.zeros((2, 5, 5), np.uint8), np.array([0.0, 0.1]))
    with pytest.raises(EmulatorError, match="increase"):
        emu.emulate(np.zeros((2, 4, 5), np.uint8), np.array([0.1, 0.1]))
    emu.emulate(np.zeros((2, 4, 5), np.uint8), np.array([0.0, 0.1]))
    with pytest.raises(EmulatorError, match="increase"):
        emu.emulate(np.zeros((1, 4, 5), np.uint8), np.array([0.05]))
    with pytest.raises(EmulatorError, match="timestamps"):
        emu.emulate(np.zeros((2, 4, 5), np.uint8), np.array([0.2]))
    with pytest.raises(ImageError, match="shape"):
        emu.emulate(np.zeros((2, 4, 5, 2), np.uint8))
    bad = np.zeros((2, 4, 5), np.float32)
    bad[1, 0, 0] = np.nan
    with pytest.raises(ImageError, match="NaN"):
        DvsEmulator(EmulatorConfig(width=5, height=4)).emulate(bad, np.array([0.0, 0.1]))
    with pytest.raises(ConfigError, match="pos_threshold"):
        EmulatorConfig(pos_threshold=0)
