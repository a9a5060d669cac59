"""SNN runtime: fused graph == SpikingJelly forward, streaming == windowed, batching, energy, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from fer_perception.errors import ConfigError
from fer_perception.models.checkpoint import save_checkpoint
from fer_perception.models.spiking_fer import CNNBaseline, SpikingFER
from fer_perception.runtime.snn import SnnInputError, SnnRunner, StreamingSnn
from fer_perception.runtime.snn_energy import cnn_baseline_macs, conv_out_size, fanout_map
from fer_perception.runtime.snn_fused import FusedSpikingFER, LayerStats, if_steps
from model_helpers import spike_frames, trained_like


SMALL = dict(width=0.25, input_size=64)


@pytest.fixture(scope="module")
def small_snn():
    torch.manual_seed(0)
    return trained_like(SpikingFER(n_classes=6, timesteps=6, **SMALL))


@pytest.fixture(scope="module")
def runner(small_snn):
    return SnnRunner(small_snn, device="cpu")


def test_if_steps_matches_the_if_equations():
    x = torch.tensor([[0.6], [0.6], [0.3], [1.5], [-0.2], [0.9]])
    v = if_steps(x.clone().view(6, 1))
    spikes = x.clone()
    if_steps(spikes)
    # v: .6 -> 1.2 fire/0 -> .3 -> 1.8 fire/0 -> -.2 -> .7
    assert spikes.flatten().tolist() == [0, 1, 0, 1, 0, 0]
    assert torch.allclose(v, torch.tensor([0.7]))


def test_fused_equals_spikingjelly_forward_full_size():
    torch.manual_seed(1)
    model = trained_like(SpikingFER(), seed=1)
    x = spike_frames(2, size=128, seed=1).permute(1, 0, 2, 3, 4).contiguous()
    fused = FusedSpikingFER(model)
    with torch.inference_mode():
        ref = model(x)
        got = fused(x.clone())
    assert torch.allclose(got, ref, rtol=1e-4, atol=1e-4 * float(ref.abs().max())), (got, ref)
    assert torch.equal(got.argmax(1), ref.argmax(1))


def test_runner_probabilities_and_outputs(runner, small_snn):
    frames = spike_frames(3)
    out = runner.predict(frames.numpy())
    assert out.probabilities.shape == (3, 6) and out.probabilities.dtype == np.float32
    assert np.allclose(out.probabilities.sum(1), 1.0, atol=1e-5)
    with torch.inference_mode():
        ref = small_snn(frames.permute(1, 0, 2, 3, 4))
    assert np.allclose(out.logits, ref.numpy(), rtol=1e-4, atol=1e-4 * float(ref.abs().max()))
    assert out.classes == ("happy", "fear", "surprise", "anger", "disgust", "sadness")
    assert out.labels[0] in out.classes
    assert len(out.firing_rates) == 20 and "layer2.0.downsample_sn" in out.firing_rates
    for name, rate in out.firing_rates.items():
        assert rate.shape == (3,) and np.all((rate >= 0) & (rate <= 1)), name
    assert np.all(out.mean_firing_rate > 0)


def test_windows_are_independent_and_batching_changes_nothing(runner):
    a, b = spike_frames(1, seed=2), spike_frames(1, seed=3, density=0.2)
    alone = runner.predict(b).logits
    runner.predict(a)
    assert np.array_equal(runner.predict(b).logits, alone)
    both = runner.predict(torch.cat([a, b]))
    assert np.allclose(both.logits[1], alone[0], rtol=1e-5, atol=1e-5)
    chunked = SnnRunner(runner.model, device="cpu", max_batch=1, warmup=1).predict(torch.cat([a, b]))
    assert np.allclose(chunked.logits, both.logits, rtol=1e-5, atol=1e-5)
    assert np.allclose(chunked.energy.snn_sops, both.energy.snn_sops)


def test_streaming_reproduces_the_window_exactly(runner):
    frames = spike_frames(2, seed=4)
    window = runner.predict(frames)
    stream = StreamingSnn(runner)
    outs = [stream.push(frames[:, t]) for t in range(6)]
    assert all(o is None for o in outs[:5]) and outs[5] is not None
    assert np.array_equal(outs[5].logits, window.logits)
    for name in window.firing_rates:
        assert np.allclose(outs[5].firing_rates[name], window.firing_rates[name]), name
    assert np.allclose(outs[5].energy.snn_sops, window.energy.snn_sops)
    # state was reset: the next window is again the same
    outs = [stream.push(frames[:, t].numpy()) for t in range(6)]
    assert np.array_equal(outs[5].logits, window.logits)


def test_streaming_rejects_a_batch_change_and_bad_frames(runner):
    stream = StreamingSnn(runner)
    stream.push(spike_frames(2)[:, 0])
    with pytest.raises(SnnInputError, match="batch changed"):
        stream.push(spike_frames(3)[:, 0])
    with pytest.raises(SnnInputError, match=r"\(B, 2, 64, 64\)"):
        stream.push(torch.zeros(2, 2, 32, 32))


def test_energy_sops_match_a_brute_force_count(small_snn):
    fused = FusedSpikingFER(small_snn)
    x = spike_frames(2, seed=5).permute(1, 0, 2, 3, 4).contiguous()
    st = LayerStats(2, torch.device("cpu"))
    with torch.inference_mode():
        fused(x.clone(), st)
    # conv1: every input event reaches C_out x (output positions whose 7x7/2 window holds it)
    ones = torch.ones(1, 1, 7, 7)
    per_pos = F.conv2d(x.sum(dim=(0, 2)).unsqueeze(1), ones, stride=2, padding=3).sum(dim=(1, 2, 3))
    st.finalize()
    assert np.allclose(st.sops["conv1"], per_pos.double().numpy() * 16)
    # an interior event of a 3x3/1 conv reaches 9 positions; a corner one 4
    fan = fanout_map(8, 8, 3, 1, 1)
    assert fan[4, 4] == 9 and fan[0, 0] == 4 and fan[0, 3] == 6
    assert fan.sum() == 22 ** 2  # valid taps over all outputs: (2 + 6 * 3 + 2) per axis
    # encoder.fc.0 gets every layer4 output spike x 128 synapses
    assert set(st.sops) >= {"conv1", "layer1.0.conv1", "layer1.0.conv2", "layer2.0.downsample", "encoder.fc.0"}


def test_energy_estimate_snn_vs_cnn(runner):
    out = runner.predict(spike_frames(2))
    e = out.energy
    assert e.snn_sops.shape == (2,) and np.all(e.snn_sops > 0)
    assert e.snn_macs == 6 * 128
    assert np.allclose(e.snn_joules, (e.snn_sops * 0.9 + e.snn_macs * 4.6) * 1e-12)
    assert e.cnn_joules == pytest.approx(e.cnn_macs * 4.6e-12)
    assert np.allclose(e.ratio, e.cnn_joules / e.snn_joules)
    assert e.to_dict()["cnn_macs"] == e.cnn_macs
    # silence costs (almost) nothing: only the readout MACs and neuron-driven spikes from BN biases remain
    quiet = runner.predict(torch.zeros(1, 6, 2, 64, 64)).energy
    assert quiet.sops_per_layer["conv1"][0] == 0


def _hook_macs(model, x):
    total = [0]

    def conv_hook(m, inp, out):
        total[0] += out.numel() // out.shape[0] * m.in_channels * m.kernel_size[0] * m.kernel_size[1]

    def fc_hook(m, inp, out):
        total[0] += m.in_features * m.out_features

    for m in model.modules():
        if isinstance(m, torch.nn.Conv2d):
            m.register_forward_hook(conv_hook)
        elif isinstance(m, torch.nn.Linear):
            m.register_forward_hook(fc_hook)
    with torch.no_grad():
        model(x)
    return total[0]


@pytest.mark.parametrize("width,size,t", [(1.0, 128, 6), (0.25, 64, 4)])
def test_cnn_macs_formula_equals_counted_macs(width, size, t):
    model = CNNBaseline(n_classes=6, timesteps=t, width=width, input_size=size).eval()
    assert cnn_baseline_macs(6, t, width, size) == _hook_macs(model, torch.zeros(1, 2 * t, size, size))
    assert conv_out_size(128, 7, 2, 3) == 64


def test_half_precision_is_checked_against_fp32(small_snn):
    strict = SnnRunner(small_snn, device="cpu", half=True, half_tolerance=0.0, warmup=1)
    assert not strict.half and strict.half_rejected and "bfloat16" in strict.half_rejected
    loose = SnnRunner(small_snn, device="cpu", half=True, half_tolerance=1.0, warmup=1)
    if loose.half:
        assert loose.compute_dtype == torch.bfloat16 and loose.dtype == torch.float32
        assert loose.half_max_diff is not None
        out = loose.predict(spike_frames(1))
        assert np.allclose(out.probabilities.sum(), 1.0, atol=1e-3)
    else:  # only an argmax change may reject it with tolerance 1
        assert "predicted class" in loose.half_rejected
    assert not SnnRunner(small_snn, device="cpu", warmup=1).half  # auto: never half on the CPU


def test_runner_from_checkpoint_and_cnn(tmp_path, small_snn):
    classes = ("a", "b", "c", "d", "e", "f")
    path = tmp_path / "m.pt"
    save_checkpoint(path, small_snn, {"classes": classes, "provenance": {"synthetic": True}})
    r = SnnRunner(str(path), device="cpu", warmup=1)
    assert r.classes == classes and r.meta.synthetic
    cnn = SnnRunner(trained_like(CNNBaseline(**SMALL)), device="cpu", warmup=1)
    out = cnn.predict(spike_frames(2))
    assert out.probabilities.shape == (2, 6) and out.energy is None and out.firing_rates == {}
    with pytest.raises(ConfigError, match="fused=True"):
        StreamingSnn(cnn)


def test_bad_inputs_and_devices_are_named(runner, small_snn):
    with pytest.raises(SnnInputError, match=r"\(B, 6, 2, 64, 64\)"):
        runner.predict(torch.zeros(1, 5, 2, 64, 64))
    with pytest.raises(SnnInputError, match="NaN"):
        runner.predict(torch.full((1, 6, 2, 64, 64), float("nan")))
    with pytest.raises(SnnInputError, match="numpy array or torch tensor"):
        runner.predict([[0.0]])
    with pytest.raises(SnnInputError, match="batch size 0"):
        runner.predict(np.zeros((0, 6, 2, 64, 64)))
    with pytest.raises(SnnInputError, match="dtype"):
        runner.predict(np.zeros((1, 6, 2, 64, 64), dtype=object))
    one = runner.predict(spike_frames(1)[0])
    assert one.probabilities.shape == (1, 6)
    with pytest.raises(ConfigError, match="device"):
        SnnRunner(small_snn, device="tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="CUDA is not available"):
            SnnRunner(small_snn, device="cuda")
    with pytest.raises(ConfigError, match="threads"):
        SnnRunner(small_snn, threads=0)
    with pytest.raises(ConfigError, match="class names"):
        SnnRunner(small_snn, classes=("x",))


def test_compute_dtype_round_trip_keeps_fp32_weights(small_snn):
    fused = FusedSpikingFER(small_snn)
    x = spike_frames(1, seed=6).permute(1, 0, 2, 3, 4).contiguous()
    with torch.inference_mode():
        ref = fused(x.clone())
        fused.set_compute_dtype(torch.bfloat16)
        assert fused.compute_dtype == torch.bfloat16
        low = fused(x.clone())
        fused.set_compute_dtype(torch.float32)
        back = fused(x.clone())
    assert low.dtype == torch.float32 and torch.equal(back, ref)
    assert torch.equal(low.argmax(1), ref.argmax(1)) or float((low - ref).abs().max()) < 0.5


@pytest.mark.parametrize("shape", [(6, 4, 64, 64), (2, 3, 63, 65), (1, 1, 5, 4), (1, 2, 1, 1)])
def test_separable_max_pool_equals_max_pool2d_on_spike_counts(shape):
    from fer_perception.runtime.snn_fused import max_pool_3x3_s2

    g = torch.Generator().manual_seed(7)
    x = (torch.rand(shape, generator=g) < 0.3).float() * torch.randint(1, 4, shape, generator=g).float()
    assert torch.equal(max_pool_3x3_s2(x), F.max_pool2d(x, 3, 2, 1))
