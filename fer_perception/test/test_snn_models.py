"""Spiking-FER model structure: official state-dict names/shapes, parameter count, layouts, equivalences."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from fer_perception.errors import ConfigError
from fer_perception.models.spiking_fer import (
    CNNBaseline,
    SpikingFER,
    build_model,
    channel_widths,
    count_parameters,
    frames_to_channels,
    state_dict_shapes,
)

REFERENCE = Path(__file__).resolve().parents[2] / "docs" / "reference"


def _reference(name: str):
    path = REFERENCE / name
    assert path.is_file(), f"reference manifest {path} is missing from the repository"
    rows = []
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line:
            continue
        key, shape = line.split(" ", 1)
        assert key.startswith("model.")
        rows.append((key[len("model."):], tuple(int(v) for v in re.findall(r"\d+", shape))))
    return rows


def _spiking_bn(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Give BN layers non-trivial statistics so that neurons fire (fresh zero-init blocks barely do)."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.weight.data = torch.rand(m.weight.shape, generator=g) + 0.5
            m.bias.data = torch.randn(m.bias.shape, generator=g) * 0.3
            m.running_mean.data = torch.randn(m.running_mean.shape, generator=g) * 0.1
            m.running_var.data = torch.rand(m.running_var.shape, generator=g) + 0.5
    return model.eval()


def test_snn_state_dict_equals_official_manifest():
    assert state_dict_shapes(SpikingFER()) == _reference("spiking_fer_snn_state_dict.txt")


def test_cnn_state_dict_equals_official_manifest():
    assert state_dict_shapes(CNNBaseline()) == _reference("spiking_fer_cnn_state_dict.txt")


def test_parameter_count_is_the_papers():
    assert round(count_parameters(SpikingFER()) / 1e6, 2) == 11.44


def test_zero_init_residual_and_readout_structure():
    m = SpikingFER()
    for layer in (m.encoder.layer1, m.encoder.layer2, m.encoder.layer3, m.encoder.layer4):
        for block in layer:
            assert torch.count_nonzero(block.bn2.weight) == 0
    assert m.encoder.conv1.kernel_size == (7, 7) and m.encoder.conv1.stride == (2, 2)
    assert m.encoder.conv1.padding == (3, 3) and m.encoder.conv1.bias is None
    assert m.fc.bias is None and m.encoder.fc[1].p == 0.5
    assert m.encoder.readout.v_threshold == float("inf")
    sn = m.encoder.layer1[0].sn1
    assert sn.v_threshold == 1.0 and sn.v_reset == 0.0 and sn.detach_reset
    assert type(sn.surrogate_function).__name__ == "ATan" and sn.surrogate_function.alpha == 2.0


def test_snn_forward_shape_reset_and_readout_sum():
    torch.manual_seed(0)
    m = _spiking_bn(SpikingFER(n_classes=6, timesteps=4, width=0.25, input_size=64))
    x = (torch.rand(4, 3, 2, 64, 64) < 0.15).float()
    with torch.no_grad():
        y = m(x)
        assert y.shape == (3, 6)
        # states are reset per call: same input, same output
        assert torch.equal(m(x), y)
        # readout = fc2(sum over t of fc1(feature_t))
        m.reset_state()
        feats = m.encoder.features(x)
        alt = m.fc(m.encoder.fc[0](feats).sum(0))
    assert torch.allclose(alt, y, atol=1e-5, rtol=1e-5)
    # batch items are independent
    with torch.no_grad():
        y1 = m(x[:, 1:2])
    assert torch.allclose(y1, y[1:2], atol=1e-5)


def test_snn_trains_gradients_reach_conv1():
    m = SpikingFER(n_classes=3, timesteps=2, width=0.125, input_size=32).train()
    x = (torch.rand(2, 2, 2, 32, 32) < 0.3).float()
    loss = torch.nn.functional.cross_entropy(m(x), torch.tensor([0, 2]))
    loss.backward()
    assert m.fc.weight.grad is not None and torch.count_nonzero(m.fc.weight.grad) > 0
    assert m.encoder.fc[0].weight.grad is not None


def test_cnn_channel_order_is_2t_plus_polarity():
    x = torch.zeros(3, 1, 2, 8, 8)
    x[2, 0, 1] = 1.0  # t=2, polarity 1 -> channel 5
    c = frames_to_channels(x)
    assert c.shape == (1, 6, 8, 8)
    assert torch.count_nonzero(c[0, 5]) == 64 and torch.count_nonzero(c) == 64
    m = CNNBaseline(n_classes=4, timesteps=3, width=0.25, input_size=32).eval()
    x5 = torch.rand(3, 2, 2, 32, 32)
    with torch.no_grad():
        assert torch.allclose(m(x5), m(frames_to_channels(x5)))
        assert m(frames_to_channels(x5)).shape == (2, 4)


def test_width_and_bad_configs():
    assert channel_widths(0.25) == (16, 32, 64, 128)
    m = build_model("snn", n_classes=7, timesteps=3, width=0.5)
    assert m.fc.weight.shape == (7, 256) and m.encoder.fc[0].weight.shape == (256, 256)
    with pytest.raises(ConfigError, match="kind"):
        build_model("rnn")
    with pytest.raises(ConfigError, match="width"):
        build_model("snn", width=0)
    with pytest.raises(ConfigError, match="n_classes"):
        build_model("cnn", n_classes=0)


def test_bad_input_shapes_are_named():
    m = SpikingFER(width=0.125, input_size=32)
    with pytest.raises(ConfigError, match=r"\(T, B, 2, H, W\)"):
        m(torch.zeros(1, 2, 32, 32))
    c = CNNBaseline(timesteps=6, width=0.125, input_size=32)
    with pytest.raises(ConfigError, match=r"\(B, 12, H, W\)"):
        c(torch.zeros(1, 10, 32, 32))
